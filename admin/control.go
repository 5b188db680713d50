package admin

import (
	"context"
	"errors"
	"strconv"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// The control commands of an admin user, and applying a configuration
// (RELOAD, SET, SIGHUP).

// dbVerbs are the commands whose argument is a database of the pools.
var dbVerbs = map[string]bool{"PAUSE": true, "RESUME": true, "RECONNECT": true, "WAIT_CLOSE": true,
	"KILL": true, "DISABLE": true, "ENABLE": true}

// String is the command as the log shows it.
func (cmd command) String() string {
	switch {
	case cmd.verb == "SET" && cmd.db != "":
		return "SET " + strconv.Quote(cmd.db) + "." + cmd.key + " = " + cmd.value
	case cmd.verb == "SET":
		return "SET " + cmd.key + " = " + cmd.value
	case cmd.arg != "":
		return cmd.verb + " " + cmd.arg
	}
	return cmd.verb
}

// checkDatabase refuses a command naming a database pgmts does not serve,
// or the console itself, which is no pool.
func (c *Console) checkDatabase(db string) *wire.Error {
	if isConsole(db) {
		return consoleError("55000", "%s is the admin console, not a pool", db)
	}
	cfg := c.Config()
	if _, ok := cfg.Databases[db]; !ok {
		if _, any := cfg.Databases["*"]; !any {
			return consoleError("3D000", "no such database: %s", db)
		}
	}
	return nil
}

// control runs the commands that change the pooler.
func (c *Console) control(cmd command) (*result, *wire.Error) {
	c.log.Info("admin console command", "command", cmd.String())
	db := cmd.arg
	if db != "" && dbVerbs[cmd.verb] {
		if werr := c.checkDatabase(db); werr != nil {
			return nil, werr
		}
	}
	switch cmd.verb {
	case "PAUSE":
		ctx, cancel := c.limit()
		defer cancel()
		if err := c.pools.Pause(ctx, db); err != nil {
			c.log.Warn("PAUSE did not finish", "database", db, "err", err)
			return nil, c.timedOut("PAUSE", err, "requests stay held until RESUME")
		}
		c.log.Info("PAUSE: requests are held and no server is open", "database", db)
	case "RESUME":
		if db == "" {
			if c.attached().Resume() {
				c.log.Info("RESUME: SUSPEND ended")
			}
		} else if c.attached().Suspended() {
			return nil, consoleError("55000", "pgmts is suspended: RESUME without a database ends the SUSPEND")
		}
		c.pools.Resume(db)
		c.log.Info("RESUME", "database", db)
	case "SUSPEND":
		return c.suspend()
	case "RECONNECT":
		c.pools.Reconnect(db)
		c.log.Info("RECONNECT: every server closes once its client lets it go", "database", db)
	case "WAIT_CLOSE":
		ctx, cancel := c.limit()
		defer cancel()
		if err := c.pools.WaitClose(ctx, db); err != nil {
			return nil, c.timedOut("WAIT_CLOSE", err, "they close once their clients let them go")
		}
	case "KILL":
		// Clients first: a killed server would tell its client only that
		// the server connection was lost.
		n := c.killClients(func(cl *queue.Client) bool { return cl.Pool.Database == db },
			wire.Fatal("57P01", "terminating connection due to administrator command (KILL %s)", db))
		c.pools.Kill(db)
		c.log.Info("KILL: clients and servers dropped; new clients wait until RESUME", "database", db, "clients", n)
	case "KILL_CLIENT":
		return c.killClient(cmd.arg)
	case "DISABLE", "ENABLE":
		disable := cmd.verb == "DISABLE"
		c.mu.Lock()
		if disable {
			c.disabled[db] = true
		} else {
			delete(c.disabled, db)
		}
		c.mu.Unlock()
		c.log.Info(cmd.verb+": connected clients carry on", "database", db, "new_logins_refused", disable)
	case "RELOAD":
		if err := c.Reload(); err != nil {
			return nil, consoleError("F0000", "RELOAD failed, nothing changed: %v", err)
		}
	case "SHUTDOWN":
		return c.shutdownCommand(cmd.arg != "")
	case "SET":
		return c.set(cmd)
	}
	return &result{tag: cmd.verb}, nil
}

// limit bounds a command that waits: shutdown_timeout, as for SIGTERM.
func (c *Console) limit() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.Config().Pgmts.ShutdownTimeout)
}

func (c *Console) timedOut(verb string, err error, after string) *wire.Error {
	return consoleError("55006", "%s did not finish within shutdown_timeout (%s): %v; %s", verb, c.Config().Pgmts.ShutdownTimeout, err, after)
}

// suspend stops reading every client but the console's and waits until
// their replies are all out. New clients' logins wait until RESUME.
func (c *Console) suspend() (*result, *wire.Error) {
	g := c.attached()
	if g.Suspended() {
		return nil, consoleError("55000", "pgmts is already suspended; RESUME ends it")
	}
	ctx, cancel := c.limit()
	defer cancel()
	if err := g.Suspend(ctx, func(p *queue.Pool) bool { return isConsole(p.Database) }); err != nil {
		c.log.Warn("SUSPEND did not finish", "err", err)
		return nil, c.timedOut("SUSPEND", err, "clients stay suspended until RESUME")
	}
	c.log.Info("SUSPEND: clients are not read and every reply is sent; RESUME ends it")
	return &result{tag: "SUSPEND"}, nil
}

// killClients disconnects the logged-in clients that match, each on its
// own dispatcher's loop (through its response queue), and counts them.
func (c *Console) killClients(match func(*queue.Client) bool, e *wire.Error) int {
	n := 0
	for _, ci := range c.dispatchers().Clients {
		if match(ci.Client) {
			ci.Client.Fail(e)
			n++
		}
	}
	return n
}

// killClient is KILL_CLIENT id: id is SHOW CLIENTS' id column. The
// client's server is reset, or closed if the client was in a
// transaction, as when a client vanishes.
func (c *Console) killClient(arg string) (*result, *wire.Error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil {
		return nil, consoleError("22023", "KILL_CLIENT needs a client id (the id column of SHOW CLIENTS), not %q", arg)
	}
	if c.killClients(func(cl *queue.Client) bool { return cl.ID == id },
		wire.Fatal("57P01", "terminating connection due to administrator command (KILL_CLIENT)")) == 0 {
		return nil, consoleError("42704", "no such client: %d", id)
	}
	c.log.Info("KILL_CLIENT: client dropped", "client", id)
	return &result{tag: "KILL_CLIENT"}, nil
}

// OnShutdown sets what SHUTDOWN calls (after its reply is sent): fast
// shutdown, or with waitForClients, refuse new clients and exit once the
// last one has left.
func (c *Console) OnShutdown(fn func(waitForClients bool)) {
	c.mu.Lock()
	c.shutdown = fn
	c.mu.Unlock()
}

func (c *Console) shutdownCommand(waitForClients bool) (*result, *wire.Error) {
	c.mu.Lock()
	fn := c.shutdown
	c.mu.Unlock()
	if fn == nil {
		return nil, consoleError("0A000", "SHUTDOWN is not available: this pgmts has no shutdown hook")
	}
	c.log.Info("SHUTDOWN from the admin console", "wait_for_clients", waitForClients)
	return &result{tag: "SHUTDOWN", after: func() { fn(waitForClients) }}, nil
}

// set is SET key = value, or SET db.key = value for one database's pool
// settings; both go through apply, as RELOAD does.
func (c *Console) set(cmd command) (*result, *wire.Error) {
	name := cmd.key
	var cfg *config.Config
	var err error
	if cmd.db != "" {
		name = cmd.db + "." + cmd.key
		if isConsole(cmd.db) {
			err = errors.New("the admin console has no pool settings")
		} else {
			cfg, err = config.WithDatabase(c.Config(), cmd.db, cmd.key, cmd.value)
		}
	} else {
		cfg, err = config.With(c.Config(), cmd.key, cmd.value)
	}
	if err == nil {
		err = c.apply(cfg)
	}
	if err != nil {
		return nil, consoleError("22023", "SET %s: %v", name, err)
	}
	return &result{tag: "SET"}, nil
}

// disabledDB reports whether DISABLE refuses new logins to db.
func (c *Console) disabledDB(db string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.disabled[db]
}

// Config is the configuration in force.
func (c *Console) Config() *config.Config { return c.current.Load() }

// Reload reads the config file again and applies it (RELOAD, SIGHUP).
func (c *Console) Reload() error {
	if c.path == "" {
		return errors.New("pgmts was started without a config file")
	}
	cfg, err := config.Load(c.path)
	if err != nil {
		return err
	}
	return c.apply(cfg)
}

// apply puts cfg in force: everything a running pgmts can change (users,
// auth, TLS certificates, which the dispatchers read again, pools, limits,
// timeouts, dispatchers, log_level), without touching connected clients.
// Listener settings keep their running values, and a warning names them.
func (c *Console) apply(cfg *config.Config) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	running := c.Config()
	live, restart := config.Live(running, cfg)
	if err := c.attached().Reload(live); err != nil {
		return err
	}
	detached := c.pools.Reload(live)
	_ = c.level.UnmarshalText([]byte(live.Pgmts.LogLevel))
	c.current.Store(live)
	c.log.Info("configuration and TLS certificates reloaded", "changed", config.Changed(running, live), "pools_detached", detached)
	if len(restart) > 0 {
		c.log.Warn("these settings changed but take effect only at restart", "settings", restart)
	}
	return nil
}
