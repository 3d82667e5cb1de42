package githubapp

import (
	"container/list"
	"sync"
)

// The blob cache's bounds: pipeline files are a few KiB, so 4096 of them
// fit well within 64 MiB.
const (
	blobCacheEntries = 4096
	blobCacheBytes   = 64 << 20
)

// blobCache is a least-recently-used cache of file contents keyed by git
// blob SHA, bounded in entries and bytes. A blob SHA names its content,
// so one cache serves every installation of an App: a client only looks
// up SHAs that its own installation's trees listed.
type blobCache struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int
	bytes      int
	order      *list.List // front is the most recently used
	items      map[string]*list.Element
}

type blobItem struct {
	sha     string
	content []byte
}

func newBlobCache(maxEntries, maxBytes int) *blobCache {
	return &blobCache{maxEntries: maxEntries, maxBytes: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

func (c *blobCache) get(sha string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[sha]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*blobItem).content, true
}

func (c *blobCache) put(sha string, content []byte) {
	if len(content) > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[sha]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.items[sha] = c.order.PushFront(&blobItem{sha: sha, content: content})
	c.bytes += len(content)
	for c.order.Len() > c.maxEntries || c.bytes > c.maxBytes {
		old := c.order.Back()
		it := old.Value.(*blobItem)
		c.order.Remove(old)
		delete(c.items, it.sha)
		c.bytes -= len(it.content)
	}
}

func (c *blobCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
