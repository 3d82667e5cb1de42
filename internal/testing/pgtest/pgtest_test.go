package pgtest_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/sluice-ci/sluice/internal/testing/pgtest"
)

func TestServer(t *testing.T) {
	s := pgtest.Start(t)
	s.CreateUser("alice", "secret")
	s.Exec("postgres", "CREATE DATABASE alice OWNER alice")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(user, password string) error {
		c, err := pq.NewConnector(s.URL(user, password, "alice", "sslmode=disable"))
		if err != nil {
			return err
		}
		db := sql.OpenDB(c)
		defer db.Close()
		var who string
		if err := db.QueryRowContext(ctx, "SELECT current_user").Scan(&who); err != nil {
			return err
		}
		if who != user {
			t.Errorf("connected as %q, want %q", who, user)
		}
		return nil
	}
	if err := open("alice", "secret"); err != nil {
		t.Fatalf("alice with her password: %v", err)
	}
	if err := open(pgtest.Superuser, ""); err != nil {
		t.Fatalf("the superuser without a password: %v", err)
	}
	var pqErr *pq.Error
	if err := open("alice", "wrong"); !errors.As(err, &pqErr) || pqErr.Code != "28P01" {
		t.Fatalf("alice with a wrong password: %v, want invalid_password (28P01)", err)
	}

	s.Stop()
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", s.Addr())
	} else if !strings.Contains(err.Error(), "refused") {
		t.Logf("dialling the stopped server: %v", err)
	}
}
