package sharedserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/config"
)

// authQueries runs auth_query lookups: one connection per backend database
// and auth_user, serving one lookup at a time and reopened after an error.
// Answers, "no such user" included, are reused for auth_cache_ttl, and
// clients asking for the same user at once share one lookup.
type authQueries struct {
	mu      sync.Mutex
	conns   map[string]*authConn // by target: host, port, dbname, auth_user
	cache   map[string]cachedSecret
	waiting map[string][]func(auth.Secret, error) // by target + user
}

type authConn struct {
	mu sync.Mutex
	pc *pgconn.PgConn
}

type cachedSecret struct {
	secret  auth.Secret
	expires time.Time
}

func newAuthQueries() authQueries {
	return authQueries{conns: map[string]*authConn{}, cache: map[string]cachedSecret{}, waiting: map[string][]func(auth.Secret, error){}}
}

// LookupUser implements queue.Router.
func (p *Pools) LookupUser(database, user string, done func(auth.Secret, error)) {
	aq, ok := p.conf().AuthQueryFor(database)
	if !ok {
		done(auth.Secret{}, nil)
		return
	}
	target := fmt.Sprintf("%s\x00%d\x00%s\x00%s", aq.Host, aq.Port, aq.DBName, aq.User)
	key := target + "\x00" + user
	a := &p.auth
	a.mu.Lock()
	if c, ok := a.cache[key]; ok && time.Now().Before(c.expires) {
		a.mu.Unlock()
		done(c.secret, nil)
		return
	}
	if w, ok := a.waiting[key]; ok {
		a.waiting[key] = append(w, done)
		a.mu.Unlock()
		return
	}
	a.waiting[key] = []func(auth.Secret, error){done}
	a.mu.Unlock()

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		a.answer(key, auth.Secret{}, errors.New("pgmts is shutting down"), 0)
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		secret, err := p.runAuthQuery(aq, target, user)
		ttl := aq.CacheTTL
		if err != nil {
			ttl = 0
			p.log.Warn("auth_query lookup failed; clients without a password in the config cannot log in", "host", aq.Host, "port", aq.Port, "dbname", aq.DBName, "auth_user", aq.User, "user", user, "err", err)
		}
		a.answer(key, secret, err, ttl)
	}()
}

// answer hands a lookup's result to every client waiting for it.
func (a *authQueries) answer(key string, s auth.Secret, err error, ttl time.Duration) {
	a.mu.Lock()
	waiters := a.waiting[key]
	delete(a.waiting, key)
	if ttl > 0 {
		a.cache[key] = cachedSecret{secret: s, expires: time.Now().Add(ttl)}
	}
	a.mu.Unlock()
	for _, w := range waiters {
		w(s, err)
	}
}

// runAuthQuery asks PostgreSQL for user's password. Its errors say what
// the operator has to fix.
func (p *Pools) runAuthQuery(aq config.AuthQuery, target, user string) (auth.Secret, error) {
	a := &p.auth
	a.mu.Lock()
	c := a.conns[target]
	if c == nil {
		c = &authConn{}
		a.conns[target] = c
	}
	a.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), aq.ConnectTimeout)
	defer cancel()
	if c.pc == nil {
		cfg, err := p.connConfig(aq.Host, aq.Port, aq.DBName, aq.User, aq.Password, aq.ConnectTimeout)
		if err != nil {
			return auth.Secret{}, err
		}
		pc, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			return auth.Secret{}, fmt.Errorf("auth_user %q cannot log in to PostgreSQL (check auth_user, its plain-text password in [users] or auth_file, and pg_hba.conf): %w", aq.User, err)
		}
		c.pc = pc
	}
	rr := c.pc.ExecParams(ctx, aq.Query, [][]byte{[]byte(user)}, nil, nil, nil)
	var password []byte // the first row's; nil for no row or NULL
	for first := true; rr.NextRow(); first = false {
		if v := rr.Values(); first && len(v) == 2 && v[1] != nil {
			password = bytes.Clone(v[1])
		}
	}
	columns := len(rr.FieldDescriptions())
	if _, err := rr.Close(); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			// The connection itself failed: open a new one next time.
			c.pc.Close(ctx)
			c.pc = nil
			return auth.Secret{}, fmt.Errorf("auth_query connection failed: %w", err)
		}
		return auth.Secret{}, fmt.Errorf("auth_query failed (check pgmts.auth_query, and that auth_user %q may read what it selects): %w", aq.User, err)
	}
	if columns != 2 {
		return auth.Secret{}, fmt.Errorf("auth_query returned %d columns; it must return two, the user name and the password", columns)
	}
	if password == nil {
		return auth.Secret{}, nil
	}
	secret, err := auth.ParseSecret(string(password))
	if err != nil {
		return auth.Secret{}, fmt.Errorf("auth_query's password for user %q: %w", user, err)
	}
	return secret, nil
}

// prune forgets expired answers.
func (a *authQueries) prune(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, c := range a.cache {
		if now.After(c.expires) {
			delete(a.cache, key)
		}
	}
}

// closeAll closes the lookup connections; no lookup runs any more.
func (a *authQueries) closeAll() {
	a.mu.Lock()
	conns := a.conns
	a.conns = map[string]*authConn{}
	a.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		if c.pc != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.pc.Close(ctx)
			cancel()
			c.pc = nil
		}
		c.mu.Unlock()
	}
}
