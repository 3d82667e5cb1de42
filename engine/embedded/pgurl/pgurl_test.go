package pgurl

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *URL
		str  string
	}{
		{
			name: "minimal",
			in:   "postgres://sluice@db.internal/ci",
			want: &URL{User: "sluice", Host: "db.internal", Port: 5432, Database: "ci", VisibilityDatabase: "ci_visibility", MaxConns: DefaultMaxConns, Driver: "pq", Params: map[string]string{"sslmode": "prefer"}},
			str:  "postgres://sluice@db.internal:5432/ci",
		},
		{
			name: "everything",
			in:   "postgresql://sluice:s%40cret@10.0.0.5:6432/ci?sslmode=verify-full&sslrootcert=/etc/ca.pem&visibility_db=civis&max_conns=8&driver=pgx",
			want: &URL{User: "sluice", Password: "s@cret", Host: "10.0.0.5", Port: 6432, Database: "ci", VisibilityDatabase: "civis", MaxConns: 8, Driver: "pgx",
				Params: map[string]string{"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}},
			str: "postgres://sluice:***@10.0.0.5:6432/ci?driver=pgx&max_conns=8&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&visibility_db=civis",
		},
		{
			name: "IPv6",
			in:   "postgres://u@[::1]:5433/d?sslmode=disable",
			want: &URL{User: "u", Host: "::1", Port: 5433, Database: "d", VisibilityDatabase: "d_visibility", MaxConns: DefaultMaxConns, Driver: "pq", Params: map[string]string{"sslmode": "disable"}},
			str:  "postgres://u@[::1]:5433/d?sslmode=disable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Parse (-want +got):\n%s", d)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"scheme", "mysql://u:pw@h/d", `--db "mysql://u:***@h/d" is not a PostgreSQL URL`},
		{"no user", "postgres://h/d", "names no user"},
		{"no host", "postgres://u@/d", "names no host"},
		{"no database", "postgres://u:pw@h:5432", `--db "postgres://u:***@h:5432" names no database`},
		{"bad port", "postgres://u@h:99999/d", `port "99999"`},
		{"bad name", "postgres://u@h/a;b", `database name "a;b"`},
		{"sslmode", "postgres://u@h/d?sslmode=on", `sslmode "on" is not one of disable, allow, prefer`},
		{"visibility same", "postgres://u@h/d?visibility_db=d", "visibility_db"},
		{"max_conns", "postgres://u@h/d?max_conns=1", "max_conns"},
		{"driver", "postgres://u@h/d?driver=mysql", `driver "mysql" is not pq (the default) or pgx`},
		{"dbname param", "postgres://u@h/d?dbname=x", "give the dbname in the URL"},
		{"user", "postgres://a%40b@h/d", `user "a@b": Temporal's PostgreSQL plugin takes user names of letters`},
		{"password with a space", "postgres://u:p%20w@h/d", "the password has a space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.in, err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}
