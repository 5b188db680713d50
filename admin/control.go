package admin

import (
	"context"
	"errors"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/wire"
)

// The control commands of an admin user, and applying a configuration
// (RELOAD, SET, SIGHUP).

// control runs PAUSE, RESUME, RECONNECT, RELOAD and SET.
func (c *Console) control(cmd command) (*result, *wire.Error) {
	db := cmd.arg
	if db != "" && (cmd.verb == "PAUSE" || cmd.verb == "RESUME" || cmd.verb == "RECONNECT") {
		cfg := c.Config()
		if _, ok := cfg.Databases[db]; !ok {
			if _, any := cfg.Databases["*"]; !any {
				return nil, consoleError("3D000", "no such database: %s", db)
			}
		}
	}
	switch cmd.verb {
	case "PAUSE":
		limit := c.Config().Pgmts.ShutdownTimeout
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		if err := c.pools.Pause(ctx, db); err != nil {
			c.log.Warn("PAUSE did not finish", "database", db, "err", err)
			return nil, consoleError("55006", "PAUSE did not finish within shutdown_timeout (%s): %v; requests stay held until RESUME", limit, err)
		}
		c.log.Info("PAUSE: requests are held and no server is open", "database", db)
		return &result{tag: "PAUSE"}, nil
	case "RESUME":
		c.pools.Resume(db)
		c.log.Info("RESUME", "database", db)
		return &result{tag: "RESUME"}, nil
	case "RECONNECT":
		c.pools.Reconnect(db)
		c.log.Info("RECONNECT: every server closes once its client lets it go", "database", db)
		return &result{tag: "RECONNECT"}, nil
	case "RELOAD":
		if err := c.Reload(); err != nil {
			return nil, consoleError("F0000", "RELOAD failed, nothing changed: %v", err)
		}
		return &result{tag: "RELOAD"}, nil
	case "SET":
		cfg, err := config.With(c.Config(), cmd.key, cmd.value)
		if err == nil {
			err = c.apply(cfg)
		}
		if err != nil {
			return nil, consoleError("22023", "SET %s: %v", cmd.key, err)
		}
		return &result{tag: "SET"}, nil
	}
	return nil, consoleError("0A000", "%s is not supported yet by the pgmts admin console", cmd.verb)
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
	c.mu.Lock()
	group := c.group
	c.mu.Unlock()
	if err := group.Reload(live); err != nil {
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
