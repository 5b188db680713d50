// Command pgmtsbench measures PostgreSQL directly, through pgmts and
// through PgBouncer side by side in one run: pgbench scenarios interleaved
// (the order turned each round) over several repetitions, idle clients and
// a large result, with medians, ratios, a CSV, a markdown summary and an
// SVG chart. `make bench` runs it; README's "Benchmarks" section lists its
// flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgmts/pgmts/pgtest"
)

type options struct {
	dsn          string
	pgmtsBin     string
	pgbouncerBin string
	out          string
	scale        int
	init         bool
	seconds      int
	reps         int
	oneReps      int
	idleReps     int
	backends     int
	clients      []int
	protocols    []string
	scenarios    []string
	targets      []string
	tpcbClients  int
	sessClients  int
	stormClients int
	pacedClients int
	pacedRate    int
	idleClients  int
	bigRows      int
	instrTxns    int
	cpuprofile   string
	tls          bool
	serverTLS    bool
	smoke        bool
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgmtsbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = runBench(ctx, o)
	// As pgtest.Require does for the tests: no PostgreSQL here is a skip,
	// except in CI.
	if o.smoke && errors.Is(err, pgtest.ErrNoPostgres) && os.Getenv("CI") != "true" {
		fmt.Fprintln(os.Stderr, "pgmtsbench: skipping the smoke run:", err)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgmtsbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pgmtsbench", flag.ContinueOnError)
	fs.StringVar(&o.dsn, "dsn", "", "reuse this PostgreSQL (keyword/value DSN; its user needs to create tables) instead of a scratch cluster")
	fs.StringVar(&o.pgmtsBin, "pgmts", "bin/pgmts", "the pgmts binary (make build)")
	fs.StringVar(&o.pgbouncerBin, "pgbouncer", "", "the PgBouncer binary (default: pgbouncer on PATH or in /usr/sbin; measured without it when there is none)")
	fs.StringVar(&o.out, "out", "", "results directory (default bench/results/<date-time>)")
	fs.IntVar(&o.scale, "scale", 10, "pgbench -i scale")
	fs.BoolVar(&o.init, "init", true, "load pgbench's tables (pgbench -i) first")
	fs.IntVar(&o.seconds, "T", 3, "seconds per pgbench run (plus one per 150 clients for their logins)")
	fs.IntVar(&o.reps, "reps", 3, "repetitions of every scenario (medians are reported)")
	fs.IntVar(&o.oneReps, "one-client-reps", 7, "repetitions of the one-client select-only points instead (their latency moves most with where the kernel puts pgbench, the pooler and the backend)")
	fs.IntVar(&o.idleReps, "idle-reps", 1, "repetitions of the idle-clients scenario (each logs every client in with SCRAM)")
	fs.IntVar(&o.backends, "backends", 20, "transaction pool size of both poolers")
	clients := fs.String("clients", "1,10,50,200,1000", "select-only client counts")
	protocols := fs.String("protocols", "simple,extended", "select-only pgbench -M protocols")
	scenarios := fs.String("scenarios", "select,tpcb,session,storm,paced,big,idle", "scenarios to run; also instructions (not by default: it needs valgrind and takes about a minute per protocol)")
	targets := fs.String("targets", "direct,pgmts,pgbouncer", "targets to measure")
	fs.IntVar(&o.tpcbClients, "tpcb-clients", 50, "clients of the TPC-B-like scenario")
	fs.IntVar(&o.sessClients, "session-clients", 50, "clients of the session-mode scenario (one backend each)")
	fs.IntVar(&o.stormClients, "storm-clients", 10, "clients of the connection storm (pgbench -C)")
	fs.IntVar(&o.pacedClients, "paced-clients", 10, "clients of the paced scenario")
	fs.IntVar(&o.pacedRate, "paced-rate", 200, "transactions per second of the paced scenario (pgbench -R), a light load where the pooler often waits")
	fs.IntVar(&o.idleClients, "idle-clients", 10000, "idle authenticated clients to open")
	fs.IntVar(&o.bigRows, "big-rows", 1000000, "rows of 1,000 bytes in the large result (1,000,000: 1 GB)")
	fs.IntVar(&o.instrTxns, "instr-txns", 1000, "instructions scenario: transactions of the shorter of its two runs per pooler (the longer runs three times as many)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "fetch a pgmts CPU profile during the first repetition of this point (e.g. select/simple/50)")
	fs.BoolVar(&o.tls, "tls", false, "clients reach both poolers over TLS (sslmode=require); direct stays plaintext")
	fs.BoolVar(&o.serverTLS, "server-tls", false, "both poolers reach PostgreSQL over TLS, and direct runs use TLS too (a scratch cluster runs with ssl = on and a throwaway certificate; a server given by -dsn must accept TLS)")
	fs.BoolVar(&o.smoke, "smoke", false, "check the harness in about a minute: tiny runs, results in a temp dir removed afterwards; fails on errors, never on timings")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.smoke {
		// The preset gives way to flags set explicitly.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		preset := map[string]string{"scale": "1", "T": "2", "reps": "1", "one-client-reps": "1", "idle-reps": "1", "clients": "10",
			"scenarios": "select,session,storm,paced,big,idle,instructions", "session-clients": "10", "idle-clients": "50", "instr-txns": "50",
			"big-rows": "2000", "cpuprofile": "select/extended/10"}
		for name, v := range preset {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	var err error
	if o.clients, err = intList(*clients); err != nil {
		return nil, fmt.Errorf("-clients: %v", err)
	}
	o.protocols = strings.Split(*protocols, ",")
	o.scenarios = strings.Split(*scenarios, ",")
	o.targets = strings.Split(*targets, ",")
	for _, p := range o.protocols {
		if p != "simple" && p != "extended" && p != "prepared" {
			return nil, fmt.Errorf("-protocols: unknown protocol %q", p)
		}
	}
	for _, sc := range o.scenarios {
		if !oneOf(sc, scSelect, scTPCB, scSession, scStorm, scPaced, scBig, scIdle, scInstr) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q", sc)
		}
	}
	for _, t := range o.targets {
		if !oneOf(t, direct, pgmtsT, pgbouncer) {
			return nil, fmt.Errorf("-targets: unknown target %q", t)
		}
	}
	if o.seconds < 1 || o.reps < 1 || o.oneReps < 1 || o.idleReps < 1 || o.backends < 1 || o.instrTxns < 1 {
		return nil, errors.New("-T, -reps, -one-client-reps, -idle-reps, -backends and -instr-txns must be at least 1")
	}
	return o, nil
}

// repsFor is how many repetitions a pgbench point gets. One client's
// latency depends on where the kernel places pgbench, the pooler and the
// backend on the two CPUs. When the pooler ends up alone on one (it is
// then never preempted: 0.01 involuntary context switches per transaction
// against 0.45), every hop of a transaction wakes an idle CPU, about 20 µs
// more latency and 12 µs more pooler CPU per transaction, for PgBouncer and
// pgmts alike; a run keeps the placement it starts with, and a quarter to a
// third of the runs here start that way. A median of three is then a draw;
// the one-client points, which are short, get more repetitions.
func (o *options) repsFor(p point) int {
	if p.Scenario == scSelect && p.Clients == 1 {
		return o.oneReps
	}
	return o.reps
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func oneOf(s string, set ...string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}

// bench is one run of the harness.
type bench struct {
	o       *options
	pg      *postgres
	pgbench string
	work    string // temp dir: configs, pooler logs, pgbench logs
	out     string
	pgmts   *process
	bouncer *process
	// poolers is the settings both poolers started with, pgbouncerBin
	// PgBouncer's path: the instructions scenario starts copies.
	poolers      poolerSettings
	pgbouncerBin string
	sslmode      string // the poolers' clients'
	directSSL    string // direct runs'
	csv          *csvLog
	runs         []run
	total        int // runs planned, for progress
	done         int
	started      time.Time
	problems     []string // errors met, for -smoke's verdict
}

func runBench(ctx context.Context, o *options) (err error) {
	b := &bench{o: o, sslmode: "disable", directSSL: "disable", started: time.Now()}
	if b.pgbench, err = pgtest.FindBin("pgbench"); err != nil {
		return err
	}
	if want(o.targets, pgmtsT) {
		if _, err := os.Stat(o.pgmtsBin); err != nil {
			return fmt.Errorf("%v (build it with make build, or point -pgmts at it)", err)
		}
	}
	raiseFileLimit(o)

	b.out = o.out
	if b.out == "" {
		if o.smoke {
			if b.out, err = os.MkdirTemp("", "pgmtsbench-smoke-"); err != nil {
				return err
			}
			defer os.RemoveAll(b.out)
		} else {
			b.out = filepath.Join("bench", "results", b.started.Format("2006-01-02T15-04-05"))
		}
	}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp("", "pgmtsbench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)
	// PgBouncer runs as postgres when we are root and reads its files here.
	if err := os.Chmod(b.work, 0o755); err != nil {
		return err
	}

	progress("PostgreSQL: %s", map[bool]string{true: "reusing " + o.dsn, false: "starting a scratch cluster"}[o.dsn != ""])
	var pgTLS *tlsFiles
	if o.serverTLS {
		b.directSSL = "require"
		if o.dsn == "" {
			if pgTLS, err = writePostgresTLSFiles(b.work); err != nil {
				return err
			}
		}
		progress("both poolers and direct runs reach PostgreSQL over TLS")
	}
	if b.pg, err = startPostgres(ctx, o.dsn, pgTLS); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.pg.stop()) }()
	progress("PostgreSQL %s on %s:%d, database %s, max_connections %d", b.pg.version, b.pg.host, b.pg.port, b.pg.dbname, b.pg.maxConns)
	if b.pg.verifier == "" {
		progress("the poolers store %s's plain password (pg_authid is not readable by it)", b.pg.user)
	}
	if o.init {
		progress("pgbench -i -s %d", o.scale)
		if err := b.pg.initPgbench(ctx, b.pgbench, o.scale); err != nil {
			return err
		}
	}
	if err := b.startPoolers(); err != nil {
		return err
	}
	defer b.stopPoolers()

	f, err := os.Create(filepath.Join(b.out, "results.csv"))
	if err != nil {
		return err
	}
	defer f.Close()
	if b.csv, err = newCSVLog(f); err != nil {
		return err
	}

	plan := b.plan()
	profiled := o.cpuprofile == ""
	for _, s := range plan {
		b.total += s.runs
		profiled = profiled || s.label() == o.cpuprofile && s.Scenario != scBig && s.Scenario != scIdle && s.Scenario != scInstr
	}
	if !profiled || o.cpuprofile != "" && b.pgmts == nil {
		return fmt.Errorf("-cpuprofile %s: no pgbench run of pgmts has that label (e.g. select/simple/50, tpcb/50, storm/10)", o.cpuprofile)
	}
	progress("%d runs planned, %d s each for pgbench; results in %s", b.total, o.seconds, b.out)
	for _, s := range plan {
		if err := s.do(ctx); err != nil {
			return err
		}
	}
	if err := b.report(ctx); err != nil {
		return err
	}
	if o.smoke && len(b.problems) > 0 {
		return fmt.Errorf("smoke: %d problems:\n  %s", len(b.problems), strings.Join(b.problems, "\n  "))
	}
	return nil
}

func want(list []string, s string) bool { return oneOf(s, list...) }

// raiseFileLimit lifts RLIMIT_NOFILE for the harness and the poolers it
// starts (children inherit a limit set explicitly): the idle scenario holds
// idle-clients sockets on each side.
func raiseFileLimit(o *options) {
	need := uint64(o.idleClients + 1000)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		progress("cannot read the open-file limit: %v", err)
		return
	}
	up := syscall.Rlimit{Cur: max(lim.Max, need), Max: max(lim.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err != nil {
		// Only root may raise the hard limit; the soft one can go up to it.
		up = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up)
	}
	if up.Cur < need {
		progress("open-file limit %d is below the %d the idle scenario needs; raise the hard limit (ulimit -Hn) or lower -idle-clients", up.Cur, need)
	}
}

func (b *bench) settings() poolerSettings {
	return poolerSettings{pg: b.pg, backends: b.o.backends, sessionPool: b.o.sessClients,
		maxClients: b.o.idleClients + 1000, serverTLS: b.o.serverTLS}
}

func (b *bench) startPoolers() error {
	s := b.settings()
	if b.o.tls {
		t, err := writeTLSFiles(b.work)
		if err != nil {
			return err
		}
		s.tls = t
		b.sslmode = "require"
		progress("clients reach both poolers over TLS (sslmode=require); direct stays plaintext")
	}
	b.poolers = s
	var err error
	if want(b.o.targets, pgmtsT) {
		if b.pgmts, err = startPgmts(b.o.pgmtsBin, b.work, s, b.o.cpuprofile != ""); err != nil {
			return err
		}
		progress("pgmts pid %d on port %d", b.pgmts.pid(), b.pgmts.port)
	}
	if want(b.o.targets, pgbouncer) {
		bin := b.o.pgbouncerBin
		if bin == "" {
			bin = findPgbouncer()
		} else if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("-pgbouncer: %v", err)
		}
		if bin == "" {
			msg := "PgBouncer is not installed (apt-get install pgbouncer): measuring without it"
			progress("%s", msg)
			b.o.targets = without(b.o.targets, pgbouncer)
			return nil
		}
		b.pgbouncerBin = bin
		if b.bouncer, err = startPgbouncer(bin, b.work, s); err != nil {
			return err
		}
		progress("PgBouncer pid %d on port %d", b.bouncer.pid(), b.bouncer.port)
	}
	return nil
}

func (b *bench) stopPoolers() {
	for _, p := range []*process{b.pgmts, b.bouncer} {
		if p != nil {
			p.stop()
		}
	}
}

func without(list []string, s string) []string {
	var out []string
	for _, v := range list {
		if v != s {
			out = append(out, v)
		}
	}
	return out
}

// step is one point of the plan: its runs over every repetition and target.
type step struct {
	point
	runs int
	do   func(context.Context) error
}

func (b *bench) plan() []step {
	o := b.o
	var plan []step
	pgbenchStep := func(p point) {
		targets := b.pointTargets(p)
		plan = append(plan, step{point: p, runs: o.repsFor(p) * len(targets), do: func(ctx context.Context) error {
			return b.pgbenchPoint(ctx, p, targets)
		}})
	}
	for _, sc := range []string{scSelect, scTPCB, scSession, scStorm, scPaced, scBig, scIdle, scInstr} {
		if !want(o.scenarios, sc) {
			continue
		}
		switch sc {
		case scSelect:
			for _, c := range o.clients {
				for _, proto := range o.protocols {
					pgbenchStep(point{Scenario: scSelect, Protocol: proto, Clients: c})
				}
			}
		case scTPCB:
			pgbenchStep(point{Scenario: scTPCB, Clients: o.tpcbClients})
		case scSession:
			pgbenchStep(point{Scenario: scSession, Clients: o.sessClients})
		case scStorm:
			pgbenchStep(point{Scenario: scStorm, Clients: o.stormClients})
		case scPaced:
			pgbenchStep(point{Scenario: scPaced, Clients: o.pacedClients})
		case scBig:
			p := point{Scenario: scBig, Clients: o.bigRows}
			plan = append(plan, step{point: p, runs: o.reps * len(o.targets), do: func(ctx context.Context) error { return b.bigPoint(ctx, p) }})
		case scIdle:
			p := point{Scenario: scIdle, Clients: o.idleClients}
			pooled := without(o.targets, direct)
			plan = append(plan, step{point: p, runs: o.idleReps * len(pooled), do: func(ctx context.Context) error { return b.idlePoint(ctx, p, pooled) }})
		case scInstr:
			pooled := without(o.targets, direct)
			for _, proto := range o.protocols {
				p := point{Scenario: scInstr, Protocol: proto, Clients: 1}
				plan = append(plan, step{point: p, runs: len(pooled), do: func(ctx context.Context) error { return b.instructionsPoint(ctx, p, pooled) }})
			}
		}
	}
	return plan
}

// pointTargets leaves direct out when PostgreSQL has no room for that many
// clients beside both poolers' backends.
func (b *bench) pointTargets(p point) []string {
	room := b.pg.maxConns - 3 - 2*(b.o.backends+b.o.sessClients) - 10
	if want(b.o.targets, direct) && b.pg.maxConns > 0 && p.Clients > room {
		progress("%s: direct left out, %d clients exceed what max_connections = %d leaves beside the poolers (%d)", p.label(), p.Clients, b.pg.maxConns, room)
		return without(b.o.targets, direct)
	}
	return b.o.targets
}

// endpoint is where a target listens and which database name to ask for.
func (b *bench) endpoint(target string, p point) (port int, db, sslmode string) {
	switch target {
	case direct:
		return b.pg.port, b.pg.dbname, b.directSSL
	case pgmtsT:
		port = b.pgmts.port
	default:
		port = b.bouncer.port
	}
	db = txnDB
	if p.Scenario == scSession {
		db = sessionDB
	}
	return port, db, b.sslmode
}

func (b *bench) proc(target string) *process {
	switch target {
	case pgmtsT:
		return b.pgmts
	case pgbouncer:
		return b.bouncer
	}
	return nil
}

func (b *bench) dsn(target string, p point) string {
	port, db, ssl := b.endpoint(target, p)
	host := "127.0.0.1"
	if target == direct {
		host = b.pg.host
	}
	return b.dsnAt(host, port, db, ssl)
}

// dsnAt is the bench user's connection string for host, port and db.
func (b *bench) dsnAt(host string, port int, db, sslmode string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=%s",
		host, port, dsnQuote(b.pg.user), dsnQuote(b.pg.password), dsnQuote(db), sslmode)
}

func dsnQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\r\v\f'\\") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (b *bench) pgbenchArgs(p point) []string {
	threads := strconv.Itoa(min(p.Clients, 2))
	args := []string{"-c", strconv.Itoa(p.Clients), "-j", threads, "-T", strconv.Itoa(b.runSeconds(p))}
	switch p.Scenario {
	case scSelect:
		return append(args, "-S", "-M", p.Protocol)
	case scTPCB:
		return append(args, "-M", "simple")
	case scSession:
		return append(args, "-S", "-M", "simple")
	case scPaced:
		return append(args, "-S", "-M", "simple", "-R", strconv.Itoa(b.o.pacedRate))
	default: // storm: a new connection and login per transaction
		return append(args, "-S", "-M", "simple", "-C")
	}
}

// runSeconds is pgbench's -T for a point. pgbench counts its clients'
// logins in -T (and leaves them out of its tps), so many clients get a
// second per 150 on top: SCRAM logins ran at 200 to 250 a second here
// with the machine busy.
func (b *bench) runSeconds(p point) int {
	if p.Scenario == scPaced {
		// Long enough for a few hundred transactions: CPU time comes in
		// 10 ms ticks.
		return b.o.seconds + 2
	}
	return b.o.seconds + p.Clients/150
}

func (b *bench) pgbenchPoint(ctx context.Context, p point, targets []string) error {
	for rep := 1; rep <= b.o.repsFor(p); rep++ {
		for _, t := range roundOrder(targets, rep) {
			r := run{point: p, Target: t, Rep: rep}
			if err := b.pgbenchRun(ctx, &r); err != nil {
				return err
			}
			b.record(r)
		}
	}
	return nil
}

// roundOrder is the order of the targets in repetition rep (from 1): the
// list turned by one place each round, so that every target runs in every
// position as often as the others (direct, pgmts, PgBouncer; then pgmts,
// PgBouncer, direct; ...). A run's start depends on what ran just before
// (the direct run's backend exits as the next run starts, and the kernel
// places the next pgbench where the last one left off), and in a fixed
// order one pooler always came right after direct.
func roundOrder(targets []string, rep int) []string {
	k := (rep - 1) % len(targets)
	return append(slices.Clone(targets[k:]), targets[:k]...)
}

// pgbenchRun fills r with one pgbench run. Only the harness's own failures
// (interrupted, pooler gone) are returned; pgbench's go into r.Err.
func (b *bench) pgbenchRun(ctx context.Context, r *run) error {
	port, db, ssl := b.endpoint(r.Target, r.point)
	logDir, err := os.MkdirTemp(b.work, "pgbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(logDir)
	pb := pgbenchRun{bin: b.pgbench, host: "127.0.0.1", port: port, user: b.pg.user, password: b.pg.password,
		dbname: db, sslmode: ssl, args: b.pgbenchArgs(r.point), logDir: logDir}
	if r.Target == direct {
		pb.host = b.pg.host
	}
	proc := b.proc(r.Target)
	var (
		cpu0    time.Duration
		sampler *rssSampler
	)
	if proc != nil {
		if cpu0, err = cpuTime(proc.pid()); err != nil {
			return err
		}
		sampler = sampleRSS(proc.pid())
	}
	profile := b.startProfile(r)
	res, runErr := pb.run(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := profile(); err != nil {
		progress("cpuprofile: %v", err)
		b.problems = append(b.problems, "cpuprofile: "+err.Error())
	}
	if proc != nil {
		r.PeakRSS = sampler.finish()
		if err := proc.alive(); err != nil {
			return err
		}
		cpu1, err := cpuTime(proc.pid())
		if err != nil {
			return err
		}
		if res.Processed > 0 {
			r.CPUPerTxn = float64((cpu1 - cpu0).Microseconds()) / float64(res.Processed)
		}
	}
	if runErr != nil {
		r.Err = runErr.Error()
		return nil
	}
	r.TPS, r.ConnectMs, r.Txns = res.TPS, res.ConnectMs, res.Processed
	r.AvgMs, r.P99Ms, r.Failed, r.Aborted = res.AvgMs, res.P99Ms, res.Failed, res.Aborted
	return nil
}

// startProfile fetches pgmts's CPU profile over the run when r is the
// point -cpuprofile names; the returned func waits for it.
func (b *bench) startProfile(r *run) func() error {
	if b.o.cpuprofile != r.label() || r.Target != pgmtsT || r.Rep != 1 {
		return func() error { return nil }
	}
	path := filepath.Join(b.out, "pgmts-"+strings.ReplaceAll(r.label(), "/", "-")+".pprof")
	secs := max(1, b.o.seconds-1)
	done := make(chan error, 1)
	go func() {
		done <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.pgmts.metrics, secs), path)
	}()
	return func() error {
		if err := <-done; err != nil {
			return err
		}
		progress("CPU profile of pgmts during %s: %s (go tool pprof -top bin/pgmts %s)", r.label(), path, path)
		return nil
	}
}

func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (b *bench) bigPoint(ctx context.Context, p point) error {
	query := fmt.Sprintf("SELECT repeat('x', 1000) FROM generate_series(1, %d)", p.Clients)
	for rep := 1; rep <= b.o.reps; rep++ {
		for _, t := range roundOrder(b.o.targets, rep) {
			r := run{point: p, Target: t, Rep: rep}
			proc := b.proc(t)
			var (
				before  int64
				sampler *rssSampler
				err     error
			)
			if proc != nil {
				if before, err = statusKiB(proc.pid(), "VmRSS"); err != nil {
					return err
				}
				sampler = sampleRSS(proc.pid())
			}
			mbps, runErr := readBig(ctx, b.dsn(t, p), query)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if proc != nil {
				r.RSSGrowthKiB = max(0, sampler.finish()-before)
				if err := proc.alive(); err != nil {
					return err
				}
			}
			if runErr != nil {
				r.Err = runErr.Error()
			} else {
				r.MBps = mbps
			}
			b.record(r)
		}
	}
	return nil
}

// idlePoint opens the idle clients against each pooler, restarted first so
// every repetition starts from a fresh process (neither pooler gives freed
// memory back).
func (b *bench) idlePoint(ctx context.Context, p point, targets []string) error {
	for rep := 1; rep <= b.o.idleReps; rep++ {
		for _, t := range targets {
			proc := b.proc(t)
			proc.stop()
			fresh, err := proc.start()
			if err != nil {
				return err
			}
			if t == pgmtsT {
				b.pgmts = fresh
			} else {
				b.bouncer = fresh
			}
			r := run{point: p, Target: t, Rep: rep}
			res, err := openIdle(ctx, b.dsn(t, p), p.Clients, 16, fresh.pid())
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := fresh.alive(); err != nil {
				return err
			}
			switch {
			case err != nil:
				r.Err = err.Error()
			case res.FirstErr != nil:
				r.Err = fmt.Sprintf("%d of %d connected; first error: %v", res.Connected, p.Clients, res.FirstErr)
			}
			r.Connected, r.RSSPerClientKiB = res.Connected, res.RSSPerClientKiB
			b.record(r)
		}
	}
	return nil
}

// record keeps a run, writes its CSV row and prints its progress line.
func (b *bench) record(r run) {
	b.done++
	b.runs = append(b.runs, r)
	if err := b.csv.add(r); err != nil {
		b.problems = append(b.problems, "results.csv: "+err.Error())
	}
	var fig string
	switch r.Scenario {
	case scIdle:
		fig = fmt.Sprintf("%d connected, %.3f KiB per client", r.Connected, r.RSSPerClientKiB)
	case scInstr:
		fig = fmt.Sprintf("%s user-space instructions per transaction", num(r.InstrPerTxn, 0))
	case scBig:
		fig = fmt.Sprintf("%.1f MB/s", r.MBps)
		if r.Target != direct {
			fig += fmt.Sprintf(", pooler RSS +%.1f MiB", float64(r.RSSGrowthKiB)/1024)
		}
	default:
		unit := "tps"
		if r.Scenario == scStorm {
			unit = "connections/s"
		}
		fig = fmt.Sprintf("%s %s, avg %.3f ms, p99 %.3f ms, %d failed, %d aborted, logins %.0f ms", num(r.TPS, 0), unit, r.AvgMs, r.P99Ms, r.Failed, r.Aborted, r.ConnectMs)
		if r.CPUPerTxn > 0 {
			fig += fmt.Sprintf(", %.1f µs CPU/txn, peak RSS %.1f MiB", r.CPUPerTxn, float64(r.PeakRSS)/1024)
		}
		if r.Err == "" && b.o.smoke && (r.Txns == 0 || r.Failed > 0 || r.Aborted > 0) {
			b.problems = append(b.problems, fmt.Sprintf("%s %s: %d transactions, %d failed, %d aborted", r.label(), r.Target, r.Txns, r.Failed, r.Aborted))
		}
	}
	if r.Err != "" {
		fig = "ERROR: " + firstLine(r.Err)
		b.problems = append(b.problems, fmt.Sprintf("%s %s: %s", r.label(), r.Target, r.Err))
	}
	progress("[%d/%d] %s rep %d %s: %s", b.done, b.total, r.label(), r.Rep, r.Target, fig)
}

// report writes summary.md and the chart, and prints the summary.
func (b *bench) report(ctx context.Context) error {
	s := summarize(b.runs)
	chart := ""
	if lines := selectSeries(s); len(lines) > 0 {
		chart = "select-tps.svg"
		f, err := os.Create(filepath.Join(b.out, chart))
		if err != nil {
			return err
		}
		err = writeChart(f, "pgbench -S, transaction mode, "+strconv.Itoa(b.o.backends)+" backends: tps by clients", lines)
		if err := errors.Join(err, f.Close()); err != nil {
			return err
		}
	}
	var md strings.Builder
	if err := writeMarkdown(&md, s, b.machine(ctx), chart); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.out, "summary.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Println(md.String())
	progress("done in %s; results in %s (results.csv, summary.md%s)", time.Since(b.started).Round(time.Second), b.out,
		map[bool]string{true: ", " + chart, false: ""}[chart != ""])
	return nil
}

func (b *bench) machine(ctx context.Context) machine {
	o := b.o
	m := machine{
		Date:       b.started.Format("2006-01-02 15:04 MST"),
		Command:    strings.Join(quoteArgs(os.Args), " "),
		NProc:      runtime.NumCPU(),
		CPU:        cpuModel(),
		Kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		Go:         runtime.Version(),
		PostgreSQL: b.pg.version,
		Pgbench:    commandLine(ctx, b.pgbench, "--version"),
		PgBouncer:  "PgBouncer not measured",
		Pgmts:      "not measured",
	}
	if b.bouncer != nil {
		m.PgBouncer = commandLine(ctx, b.bouncer.cmd.Path, "--version")
	}
	if b.pgmts != nil {
		m.Pgmts = strings.TrimPrefix(commandLine(ctx, o.pgmtsBin, "--version"), "pgmts ")
	}
	auth := "SCRAM-SHA-256, the poolers holding the verifier from pg_authid"
	if b.pg.verifier == "" {
		auth = "SCRAM-SHA-256, the poolers holding the plain password"
	}
	tls := "plaintext"
	if o.tls {
		tls = "TLS to the poolers (sslmode=require)"
	}
	if o.serverTLS {
		tls += "; TLS to PostgreSQL from the poolers and direct runs"
	}
	m.Settings = fmt.Sprintf("pgbench -i -s %d; %d s per run (plus 1 s per 150 clients for their logins); repetitions: %d (one client: %d; idle clients: %d); transaction pool of %d backends, session pool of %d; %s; %s; pgbench -j 2 (1 for one client); paced: pgbench -R %d.",
		o.scale, o.seconds, o.reps, o.oneReps, o.idleReps, o.backends, o.sessClients, auth, tls, o.pacedRate)
	return m
}

func cpuModel() string {
	for line := range strings.Lines(readFile("/proc/cpuinfo")) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// commandLine is the first line a command prints, or what went wrong.
func commandLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return name + ": " + err.Error()
	}
	return strings.TrimSpace(firstLine(string(out)))
}

// quoteArgs shell-quotes what needs it, so the command can be pasted.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
