// Command pgmts is the pgmts connection pooler daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

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
	metricsSrv, err := serveMetrics(cfg, group, pools, log)
	if err != nil {
		log.Error("cannot start the metrics endpoint", "metrics_listen", cfg.Pgmts.MetricsListen, "err", err)
		group.Stop()
		return 1
	}
	log.Info("pgmts started", "version", version, "listen", cfg.Pgmts.Listen, "unix_socket_dir", cfg.Pgmts.UnixSocketDir, "config", *configPath)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	sig := <-sigs
	for ; sig == syscall.SIGHUP; sig = <-sigs {
		// As the console's RELOAD: every change a running pgmts can make,
		// without touching connected clients.
		if err := console.Reload(); err != nil {
			log.Error("SIGHUP: configuration not reloaded, nothing changed; fix the file and send SIGHUP again", "err", err)
		}
	}
	switch sig {
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
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	log.Info("pgmts stopped")
	return 0
}

func newLogger(cfg *config.Config, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Pgmts.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// serveMetrics serves /metrics in Prometheus text format.
func serveMetrics(cfg *config.Config, group *dispatcher.Group, pools *sharedserver.Pools, log *slog.Logger) (*http.Server, error) {
	if cfg.Pgmts.MetricsListen == "" {
		return nil, nil
	}
	set := metrics.NewSet()
	set.NewGauge("pgmts_clients", func() float64 { return float64(group.ClientCount()) })
	set.NewGauge("pgmts_server_connections", func() float64 { return float64(pools.BackendCount()) })
	ln, err := net.Listen("tcp", cfg.Pgmts.MetricsListen)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	if cfg.Pgmts.DebugPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return srv, nil
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
