// Command pgmts is the pgmts connection pooler daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pgmts/pgmts/admin"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/dispatcher"
	"github.com/pgmts/pgmts/sharedserver"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run())
}

func run() int {
	configPath := flag.String("c", "pgmts.toml", "configuration file")
	showVersion := flag.Bool("version", false, "print the version and exit")
	check := flag.Bool("check", false, "validate the configuration file and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("pgmts", version)
		return 0
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgmts:", err)
		return 2
	}
	if *check {
		fmt.Printf("pgmts: %s is valid\n", *configPath)
		return 0
	}
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Pgmts.LogLevel))
	log := newLogger(cfg, level)
	slog.SetDefault(log)
	checkFileLimit(cfg, log)

	pools := sharedserver.NewPools(cfg, log)
	console := admin.New(cfg, *configPath, level, pools, log, version)
	defer pools.Close()
	defer console.Close()
	group, err := dispatcher.New(cfg, console, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	console.Attach(group)
	if err := group.Start(); err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	metricsSrv, err := console.ServeMetrics()
	if err != nil {
		log.Error("cannot start the metrics endpoint", "metrics_listen", cfg.Pgmts.MetricsListen, "err", err)
		group.Stop()
		return 1
	}
	log.Info("pgmts started", "version", version, "listen", cfg.Pgmts.Listen, "unix_socket_dir", cfg.Pgmts.UnixSocketDir, "config", *configPath)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	// The console's SHUTDOWN [WAIT_FOR_CLIENTS] (true: wait for clients).
	shutdown := make(chan bool, 1)
	console.OnShutdown(func(waitForClients bool) {
		select {
		case shutdown <- waitForClients:
		default:
		}
	})
	waitForStop(group, console, sigs, shutdown, log)
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	log.Info("pgmts stopped")
	return 0
}

// waitForStop serves until a signal or the console's SHUTDOWN says to
// stop, and stops the dispatchers as asked: SIGINT and SHUTDOWN at once,
// SIGTERM once running transactions finish, SHUTDOWN WAIT_FOR_CLIENTS
// once the last client has left. SIGHUP reloads the configuration.
func waitForStop(group *dispatcher.Group, console *admin.Console, sigs <-chan os.Signal, shutdown <-chan bool, log *slog.Logger) {
	var lastClient <-chan time.Time // polls the client count during WAIT_FOR_CLIENTS
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				// As the console's RELOAD: every change a running pgmts can
				// make, without touching connected clients.
				if err := console.Reload(); err != nil {
					log.Error("SIGHUP: configuration not reloaded, nothing changed; fix the file and send SIGHUP again", "err", err)
				}
				continue
			case syscall.SIGTERM:
				timeout := console.Config().Pgmts.ShutdownTimeout
				log.Info("SIGTERM: no new clients; waiting for running transactions to finish", "shutdown_timeout", timeout)
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				go func() {
					// A second signal means: now.
					<-sigs
					cancel()
				}()
				group.Shutdown(ctx)
				cancel()
			default:
				log.Info("SIGINT: fast shutdown")
				group.Stop()
			}
			return
		case wait := <-shutdown:
			if !wait {
				log.Info("SHUTDOWN: fast shutdown")
				group.Stop()
				return
			}
			log.Info("SHUTDOWN WAIT_FOR_CLIENTS: no new clients; pgmts exits when the last one leaves", "clients", group.ClientCount())
			group.StopAccepting()
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			lastClient = t.C
		case <-lastClient:
			if group.ClientCount() == 0 {
				log.Info("SHUTDOWN WAIT_FOR_CLIENTS: the last client left")
				group.Stop()
				return
			}
		}
	}
}

func newLogger(cfg *config.Config, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Pgmts.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// checkFileLimit warns when the open-file limit cannot hold max_client_conn
// clients plus their backends: past it, accepts fail and clients see
// connection errors. (Go already raised the soft limit to the hard one.)
func checkFileLimit(cfg *config.Config, log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	need := fileBudget(cfg)
	if lim.Cur < need {
		log.Warn(fileLimitWarning(lim.Cur, need, cfg.Pgmts.MaxClientConn),
			"limit", lim.Cur, "needed", need, "max_client_conn", cfg.Pgmts.MaxClientConn)
	}
}

// fileLimitWarning names the limit to set and where, so the operator can
// paste it.
func fileLimitWarning(limit, need uint64, maxClients int) string {
	return fmt.Sprintf("open-file limit %d is below the %d descriptors max_client_conn = %d needs with the pools' backends: "+
		"clients past the limit will fail to connect. Raise it to at least %d (ulimit -n %d in the shell that starts pgmts, "+
		"LimitNOFILE=%d in its systemd unit) or lower max_client_conn", limit, need, maxClients, need, need, need)
}

// fileBudget is the descriptors pgmts may need: one per client, one per
// backend of every configured pool, and a margin for listeners, cancel
// connections and the runtime.
func fileBudget(cfg *config.Config) uint64 {
	n := uint64(cfg.Pgmts.MaxClientConn) + 64
	for name := range cfg.Databases {
		// The backend cap does not depend on the user.
		pc, _ := cfg.PoolFor(name, "")
		n += uint64(pc.MaxSharedServers)
	}
	return n
}
