// Package webui holds the web view's templates and static files, embedded
// in the binary: the server renders the pages with html/template and serves
// the files under /static/. There is no front-end build; the little
// JavaScript the pages need is written by hand in static/.
package webui

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"path"
)

//go:embed templates/*.html static/*
var files embed.FS

// Static is the files served under /static/.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Pages are the parsed templates: each page is layout.html with the page's
// own file, which defines the "title" and "content" templates.
type Pages struct {
	pages map[string]*template.Template
}

// Parse parses every page with the layout and funcs.
func Parse(funcs template.FuncMap) (*Pages, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &Pages{pages: map[string]*template.Template{}}
	for _, name := range names {
		base := path.Base(name)
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(files, name)
		if err != nil {
			return nil, err
		}
		p.pages[base] = t
	}
	return p, nil
}

// Render writes the page name (a file in templates/) with data.
func (p *Pages) Render(w io.Writer, name string, data any) error {
	t, ok := p.pages[name]
	if !ok {
		return fmt.Errorf("no page %q", name)
	}
	return t.ExecuteTemplate(w, "layout.html", data)
}

// RenderPart writes one template that page defines (a fragment a page's
// script fetches to update itself) without the layout.
func (p *Pages) RenderPart(w io.Writer, page, name string, data any) error {
	t, ok := p.pages[page]
	if !ok {
		return fmt.Errorf("no page %q", page)
	}
	return t.ExecuteTemplate(w, name, data)
}
