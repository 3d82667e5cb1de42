// Package pgurl reads the PostgreSQL URL of `sluice server --db`: where the
// embedded Temporal server keeps its state when it is not SQLite.
//
// It is apart from package embedded so that the sluice binary can check a
// URL (and say what is wrong with it) without linking the Temporal server.
//
//	postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMS]
//
// The visibility store (Temporal's index of workflows, which `sluice runs`
// queries) is a second database on the same server, DATABASE_visibility
// unless visibility_db names another: the two schemas keep their versions
// in tables of the same name, so they cannot share a database. max_conns
// bounds the connections each of the two opens (default DefaultMaxConns).
// driver=pgx runs Temporal's postgres12_pgx plugin (the pgx driver)
// instead of its postgres12 (lib/pq), the default.
// Every other parameter goes to the driver (lib/pq) as it is: sslmode
// (default prefer, as psql), sslrootcert, sslcert, sslkey, connect_timeout,
// application_name and PostgreSQL run-time settings such as search_path.
package pgurl

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DefaultPort is PostgreSQL's.
const DefaultPort = 5432

// DefaultMaxConns is how many connections each of the two databases gets at
// most: Temporal's own default configuration's figure, and, twice over,
// well under PostgreSQL's default max_connections of 100.
const DefaultMaxConns = 20

// URL is a parsed --db.
type URL struct {
	User     string
	Password string
	Host     string
	Port     int
	// Database holds Temporal's main store; VisibilityDatabase its
	// visibility store.
	Database           string
	VisibilityDatabase string
	// MaxConns bounds the connections to each database.
	MaxConns int
	// Driver is "pq" (Temporal's postgres12 plugin) or "pgx"
	// (postgres12_pgx).
	Driver string
	// Params go to the driver; sslmode is always set.
	Params map[string]string
}

var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

var (
	validName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$-]{0,62}$`)
	validUser = regexp.MustCompile(`^[A-Za-z0-9_.$-]{1,63}$`)
)

// CheckPassword refuses what Temporal's PostgreSQL plugin would pass on
// wrong: it query-escapes the password into a URL's user part, where a
// space becomes a "+" that PostgreSQL then takes literally.
func CheckPassword(p string) error {
	if strings.Contains(p, " ") {
		return fmt.Errorf("the password has a space, which Temporal's PostgreSQL plugin passes on as \"+\"; use a password without spaces")
	}
	return nil
}

// Parse reads a postgres:// (or postgresql://) URL. Its errors never show
// the password.
func Parse(s string) (*URL, error) {
	const want = "want postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...]"
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--db is not a URL (%s)", want)
	}
	shown := Redact(s)
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("--db %q is not a PostgreSQL URL: %s", shown, want)
	}
	out := &URL{Port: DefaultPort, MaxConns: DefaultMaxConns, Driver: "pq", Params: map[string]string{}}
	if u.User != nil {
		out.User = u.User.Username()
		out.Password, _ = u.User.Password()
	}
	if out.User == "" {
		return nil, fmt.Errorf("--db %q names no user: %s", shown, want)
	}
	// Temporal's plugin writes the user into its own URL as it is.
	if !validUser.MatchString(out.User) {
		return nil, fmt.Errorf("--db %q: user %q: Temporal's PostgreSQL plugin takes user names of letters, digits and _ . - $ only", shown, out.User)
	}
	if err := CheckPassword(out.Password); err != nil {
		return nil, fmt.Errorf("--db %q: %w", shown, err)
	}
	out.Host = u.Hostname()
	if out.Host == "" {
		return nil, fmt.Errorf("--db %q names no host (Unix sockets are not supported): %s", shown, want)
	}
	if p := u.Port(); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("--db %q: port %q is not a number from 1 to 65535", shown, p)
		}
		out.Port = port
	}
	out.Database = strings.TrimPrefix(u.Path, "/")
	if out.Database == "" {
		return nil, fmt.Errorf("--db %q names no database: %s", shown, want)
	}
	if !validName.MatchString(out.Database) {
		return nil, fmt.Errorf("--db %q: database name %q: use letters, digits and _ (at most 63)", shown, out.Database)
	}
	out.VisibilityDatabase = out.Database + "_visibility"
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("--db %q: its parameters: %v", shown, err)
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, fmt.Errorf("--db %q: parameter %s is given %d times", shown, k, len(vs))
		}
		v := vs[0]
		switch k {
		case "visibility_db":
			if !validName.MatchString(v) || v == out.Database {
				return nil, fmt.Errorf("--db %q: visibility_db %q must be a database name other than %q", shown, v, out.Database)
			}
			out.VisibilityDatabase = v
		case "max_conns":
			n, err := strconv.Atoi(v)
			if err != nil || n < 2 {
				return nil, fmt.Errorf("--db %q: max_conns %q is not a number of at least 2", shown, v)
			}
			out.MaxConns = n
		case "driver":
			if v != "pq" && v != "pgx" {
				return nil, fmt.Errorf("--db %q: driver %q is not pq (the default) or pgx", shown, v)
			}
			out.Driver = v
		case "sslmode":
			if !slices.Contains(sslModes, v) {
				return nil, fmt.Errorf("--db %q: sslmode %q is not one of %s", shown, v, strings.Join(sslModes, ", "))
			}
			out.Params[k] = v
		case "host", "port", "user", "password", "dbname":
			return nil, fmt.Errorf("--db %q: give the %s in the URL itself, not as a parameter", shown, k)
		default:
			out.Params[k] = v
		}
	}
	if out.Params["sslmode"] == "" {
		out.Params["sslmode"] = "prefer"
	}
	return out, nil
}

// Addr is HOST:PORT.
func (u *URL) Addr() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// Where names the main database in messages: HOST:PORT/DATABASE.
func (u *URL) Where() string { return u.Addr() + "/" + u.Database }

// String is the URL with the password replaced by ***, for messages and
// for the command lines they suggest.
func (u *URL) String() string {
	v := url.URL{Scheme: "postgres", Host: u.Addr(), Path: "/" + u.Database}
	if u.Password != "" {
		v.User = url.UserPassword(u.User, "***")
	} else {
		v.User = url.User(u.User)
	}
	q := url.Values{}
	for k, val := range u.Params {
		if k == "sslmode" && val == "prefer" {
			continue
		}
		q.Set(k, val)
	}
	if u.VisibilityDatabase != u.Database+"_visibility" {
		q.Set("visibility_db", u.VisibilityDatabase)
	}
	if u.MaxConns != DefaultMaxConns {
		q.Set("max_conns", strconv.Itoa(u.MaxConns))
	}
	if u.Driver != "pq" {
		q.Set("driver", u.Driver)
	}
	v.RawQuery = q.Encode()
	// *** reads better than its escape.
	return strings.Replace(v.String(), ":%2A%2A%2A@", ":***@", 1)
}

// Redact returns s with the password of a URL replaced by ***; what is not
// a URL comes back as it is.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), "***")
	return strings.Replace(u.String(), ":%2A%2A%2A@", ":***@", 1)
}
