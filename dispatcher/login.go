package dispatcher

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/panjf2000/gnet/v2"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/hba"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// login is a client's state between its first packet and ReadyForQuery.
type login struct {
	sslAsked bool
	user     string
	database string
	settings map[string]string
	pool     *queue.Pool

	secret auth.Secret
	known  bool // the user has a password in the config
	method string
	salt   [4]byte
	scram  *auth.SCRAMExchange
	// scramStarted: the client-first message was answered.
	scramStarted bool
	// tlsBinding is a TLS client's SCRAM-SHA-256-PLUS channel binding
	// data: needed for the login only.
	tlsBinding []byte
	// out holds messages for the client until it has to read them (flush),
	// so that SASL final, AuthenticationOk and the ready messages leave in
	// one write: one system call and one wake-up of the client.
	out []byte
}

// send queues a login message for the next flush (or fatal, or ready).
func (l *login) send(m pgproto3.Message) {
	if l.out == nil {
		l.out = make([]byte, 0, 512) // room for the ready messages too
	}
	l.out = wire.Append(l.out, m)
}

// flush writes the queued login messages; it is called wherever the login
// then waits for the client or for another goroutine. The buffer is kept
// for the next ones: Write copies what it cannot send at once.
func (cc *clientConn) flush() {
	if l := cc.login; l != nil && len(l.out) > 0 {
		_, _ = cc.c.Write(l.out)
		l.out = l.out[:0]
	}
}

// Startup parameters that are not session settings.
var notSettings = map[string]bool{"user": true, "database": true, "options": true, "replication": true}

// tlsRecordHandshake starts a TLS ClientHello: a client using direct TLS
// (PostgreSQL 17's sslnegotiation=direct) sends it with no SSLRequest.
const tlsRecordHandshake = 0x16

func (cc *clientConn) startup(buf []byte) (int, gnet.Action) {
	if cc.login == nil && buf[0] == tlsRecordHandshake {
		offer := cc.d.g.live.Load().tls
		if offer == nil {
			cc.d.log.Info("client refused: direct TLS while client_tls_mode is disable", "addr", cc.c.RemoteAddr())
			return 0, gnet.Close // it speaks TLS only: a FATAL would be garbage to it
		}
		cc.login = &login{sslAsked: true}
		return len(buf), cc.startTLS(offer, buf, true)
	}
	size, ok, err := wire.StartupLength(buf)
	if err != nil {
		return 0, cc.refuse(err)
	}
	if !ok {
		return 0, gnet.None
	}
	if len(buf) < size {
		cc.need = int32(size)
		return 0, gnet.None
	}
	cc.need = 4
	st, err := wire.ParseStartup(buf[:size])
	if err != nil {
		return size, cc.refuse(err)
	}
	if cc.login == nil {
		cc.login = &login{}
	}
	switch st.Kind {
	case wire.KindSSL, wire.KindGSSENC:
		if cc.login.sslAsked || cc.login.tlsBinding != nil {
			return size, cc.fatal(wire.Fatal("08P01", "unexpected second SSL or GSSAPI encryption request"))
		}
		cc.login.sslAsked = true
		offer := cc.d.g.live.Load().tls
		if st.Kind == wire.KindGSSENC || offer == nil {
			_, _ = cc.c.Write([]byte{'N'}) // GSSAPI encryption is not offered
			return size, gnet.None
		}
		if len(buf) > size {
			// Bytes sent before the answer would be taken as if encrypted
			// (CVE-2021-23214): PostgreSQL refuses them too.
			return size, cc.fatal(wire.Fatal("08P01", "received unencrypted data after SSL request"))
		}
		return size, cc.startTLS(offer, nil, false)
	case wire.KindCancel:
		cc.cancel(st)
		return size, gnet.Close
	}
	return size, cc.begin(st)
}

// refuse answers a malformed first packet: garbage gets a FATAL in
// PostgreSQL's words, then the connection closes.
func (cc *clientConn) refuse(err error) gnet.Action {
	var se *wire.StartupError
	if errors.As(err, &se) {
		cc.d.log.Info("client refused at startup", "addr", cc.c.RemoteAddr(), "reason", se.Message)
		return cc.fatal(wire.Fatal(se.Code, "%s", se.Message))
	}
	return cc.fatal(wire.Fatal("08P01", "%v", err))
}

func (cc *clientConn) cancel(st *wire.Startup) {
	target := cc.d.g.lookup(st.CancelPID)
	if target == nil || len(st.CancelKey) != 4 || [4]byte(st.CancelKey) != target.key || target.client == nil {
		cc.d.log.Info("cancel request with an unknown key ignored", "addr", cc.c.RemoteAddr())
		return
	}
	target.client.Pool.Backend.Cancel(target.client)
}

// begin handles a StartupMessage: protocol negotiation, then the
// authentication the config asks for.
func (cc *clientConn) begin(st *wire.Startup) gnet.Action {
	l := cc.login
	l.user = st.Get("user")
	l.database = st.Get("database")
	if l.database == "" {
		l.database = l.user
	}
	if r := st.Get("replication"); r != "" && r != "false" && r != "off" && r != "0" {
		return cc.fatal(wire.Fatal("08P01", "replication connections are not supported by pgmts; connect to PostgreSQL directly"))
	}
	var unrecognized []string
	l.settings = map[string]string{}
	for _, p := range st.Params {
		switch {
		case strings.HasPrefix(p.Name, "_pq_."):
			unrecognized = append(unrecognized, p.Name)
		case !notSettings[p.Name]:
			l.settings[strings.ToLower(p.Name)] = p.Value
		}
	}
	if opts := st.Get("options"); opts != "" {
		ps, err := wire.StartupOptions(opts)
		if err != nil {
			return cc.fatal(wire.Fatal("22023", "invalid command-line argument for server process: %v", err))
		}
		for _, p := range ps {
			l.settings[strings.ToLower(p.Name)] = p.Value
		}
	}
	// A newer 3.x client, or one with protocol options we do not know,
	// is told what we speak (3.0), as PostgreSQL does.
	if st.Protocol != wire.Protocol30 || len(unrecognized) > 0 {
		l.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized})
	}

	if werr := cc.checkTLS(); werr != nil {
		cc.d.log.Warn("client refused by client_tls_mode", "user", l.user, "database", l.database, "addr", cc.c.RemoteAddr(), "reason", werr.Message, "detail", werr.Detail)
		werr.Detail = ""
		return cc.fatal(werr)
	}
	method, werr := cc.authMethod()
	if werr != nil {
		cc.d.log.Warn("client refused by auth_hba_file", "user", l.user, "database", l.database, "addr", cc.c.RemoteAddr(), "reason", werr.Message)
		return cc.fatal(werr)
	}
	l.method = method
	l.secret, l.known = cc.d.g.live.Load().secrets[l.user]
	if l.method != "trust" && (!l.known || l.secret.Kind() == auth.KindNone) {
		return cc.lookupUser() // auth_query; it calls challenge
	}
	return cc.challenge()
}

// challenge asks the client for its password, by l.method.
func (cc *clientConn) challenge() gnet.Action {
	l := cc.login
	if !l.known || l.secret.Kind() == auth.KindNone {
		l.secret, l.known = cc.d.g.decoy, false
	}
	if l.method == "md5" && l.secret.Kind() == auth.KindSCRAM {
		l.method = "scram-sha-256" // as PostgreSQL upgrades md5 to SCRAM
	}
	switch l.method {
	case "trust":
		return cc.authenticated()
	case "cert":
		if werr := cc.checkCert(); werr != nil {
			cc.d.log.Warn("certificate authentication failed", "user", l.user, "database", l.database, "addr", cc.c.RemoteAddr(), "reason", werr.Detail)
			werr.Detail = ""
			return cc.fatal(werr)
		}
		return cc.authenticated()
	case "plain":
		l.send(&pgproto3.AuthenticationCleartextPassword{})
	case "md5":
		_, _ = rand.Read(l.salt[:])
		l.send(&pgproto3.AuthenticationMD5Password{Salt: l.salt})
	default:
		x, err := l.secret.NewSCRAM(l.user, l.tlsBinding)
		if err != nil {
			cc.d.log.Warn("user's password is stored as md5, which SCRAM cannot use; set a plain password or a SCRAM verifier, or auth_type = \"md5\"", "user", l.user)
			x, _ = cc.d.g.decoy.NewSCRAM(l.user, l.tlsBinding)
			l.known = false
		}
		l.scram = x
		mechanisms := []string{scramSHA256}
		if l.tlsBinding != nil {
			mechanisms = []string{scramSHA256Plus, scramSHA256}
		}
		l.send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechanisms})
	}
	cc.flush()
	cc.phase = phaseAuth
	cc.need = 5
	return gnet.None
}

// authMethod is how this client must authenticate: auth_type, or with
// auth_type = "hba" the method of the first auth_hba_file rule that
// matches, as PostgreSQL reads pg_hba.conf.
func (cc *clientConn) authMethod() (string, *wire.Error) {
	l := cc.login
	method := cc.d.g.cfg().Pgmts.AuthType
	if method == "hba" {
		conn := hba.Conn{Database: l.database, User: l.user, Local: true, TLS: cc.tlsState() != nil}
		host := "[local]"
		if a, ok := cc.c.RemoteAddr().(*net.TCPAddr); ok {
			conn.Local, conn.Addr, host = false, a.IP, a.IP.String()
		}
		encryption := "no encryption"
		if conn.TLS {
			encryption = "SSL encryption"
		}
		rule, ok := hba.Match(cc.d.g.cfg().HBA(), conn)
		switch {
		case !ok:
			return "", wire.Fatal("28000", "no pg_hba.conf entry for host %q, user %q, database %q, %s", host, l.user, l.database, encryption)
		case rule.Method == "reject":
			return "", wire.Fatal("28000", "pg_hba.conf rejects connection for host %q, user %q, database %q, %s", host, l.user, l.database, encryption)
		case rule.Method == "password":
			method = "plain"
		default:
			method = rule.Method
		}
	}
	return method, nil
}

// authMessage handles a PasswordMessage / SASL response.
func (cc *clientConn) authMessage(buf []byte) (int, gnet.Action) {
	typ, size, ok := wire.Header(buf)
	if !ok {
		return 0, gnet.None
	}
	if err := wire.CheckSize(size, wire.MaxStartupPacket); err != nil {
		return 0, cc.fatal(wire.Fatal("08P01", "invalid authentication message length %d", size-1))
	}
	if len(buf) < size {
		cc.need = int32(size)
		return 0, gnet.None
	}
	cc.need = 5
	if typ != 'p' {
		return size, cc.fatal(wire.Fatal("08P01", "expected password response, got message type %q", typ))
	}
	body := buf[5:size]
	l := cc.login
	switch {
	case l.method == "plain":
		var pm pgproto3.PasswordMessage
		if pm.Decode(body) != nil || !l.known || !l.secret.CheckPlain(l.user, pm.Password) {
			return size, cc.authFailed()
		}
		return size, cc.authenticated()
	case l.method == "md5":
		var pm pgproto3.PasswordMessage
		if pm.Decode(body) != nil || !l.known || !l.secret.CheckMD5(l.user, l.salt, pm.Password) {
			return size, cc.authFailed()
		}
		return size, cc.authenticated()
	case l.scramStarted:
		var r pgproto3.SASLResponse
		if r.Decode(body) != nil {
			return size, cc.fatal(wire.Fatal("08P01", "malformed SASL response"))
		}
		final, err := l.scram.Step(string(r.Data))
		if err != nil || !l.known || !l.scram.Done() {
			return size, cc.authFailed()
		}
		l.send(&pgproto3.AuthenticationSASLFinal{Data: []byte(final)})
		return size, cc.authenticated()
	default:
		var r pgproto3.SASLInitialResponse
		if r.Decode(body) != nil {
			return size, cc.fatal(wire.Fatal("08P01", "malformed SASL initial response"))
		}
		if r.AuthMechanism != scramSHA256 && (r.AuthMechanism != scramSHA256Plus || l.tlsBinding == nil) {
			return size, cc.fatal(wire.Fatal("08P01", "client selected an invalid SASL authentication mechanism %q", r.AuthMechanism))
		}
		first, err := l.scram.Step(string(r.Data))
		if err != nil {
			return size, cc.fatal(wire.Fatal("08P01", "malformed SCRAM message: %v", err))
		}
		l.scramStarted = true
		l.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(first)})
		cc.flush()
		return size, gnet.None
	}
}

const (
	scramSHA256     = "SCRAM-SHA-256"
	scramSHA256Plus = "SCRAM-SHA-256-PLUS"
)

// checkTLS applies client_tls_mode to a logging-in client: from "require"
// on, TCP clients must use TLS (unix sockets are local and exempt, as in
// PgBouncer), and verify-full wants a certificate naming the user.
func (cc *clientConn) checkTLS() *wire.Error {
	mode := cc.d.g.cfg().Pgmts.ClientTLSMode
	if mode != "require" && mode != "verify-ca" && mode != "verify-full" {
		return nil
	}
	if _, tcp := cc.c.RemoteAddr().(*net.TCPAddr); !tcp {
		return nil
	}
	if cc.tlsState() == nil {
		e := wire.Fatal("28000", "pgmts accepts only TLS connections (client_tls_mode = %s)", mode)
		e.Hint = "Connect with sslmode=require or stronger."
		return e
	}
	if mode == "verify-full" {
		return cc.checkCert()
	}
	return nil
}

// checkCert is the cert method: a client certificate that pgmts verified
// against client_tls_ca_file, whose common name is the user name. The
// reason is in Detail, for the log only.
func (cc *clientConn) checkCert() *wire.Error {
	user := cc.login.user
	state := cc.tlsState()
	e := wire.Fatal("28000", "certificate authentication failed for user %q", user)
	switch {
	case state == nil:
		e.Detail = "not a TLS connection"
	case len(state.VerifiedChains) == 0:
		e.Message = "connection requires a valid client certificate"
		e.Detail = "no verified client certificate"
	case state.PeerCertificates[0].Subject.CommonName != user:
		e.Detail = fmt.Sprintf("certificate common name %q is not the user name", state.PeerCertificates[0].Subject.CommonName)
	default:
		return nil
	}
	return e
}

func (cc *clientConn) authFailed() gnet.Action {
	cc.d.log.Warn("password authentication failed", "user", cc.login.user, "database", cc.login.database, "addr", cc.c.RemoteAddr())
	return cc.fatal(wire.Fatal("28P01", "password authentication failed for user %q", cc.login.user))
}

// authenticated finds the client's pool and waits for it to be able to
// reach PostgreSQL before the client is told it may send queries.
func (cc *clientConn) authenticated() gnet.Action {
	l := cc.login
	l.send(&pgproto3.AuthenticationOk{})
	pool, err := cc.d.g.router.Route(l.database, l.user)
	var refused *wire.Error
	if errors.As(err, &refused) {
		cc.d.log.Warn("client refused by the router", "database", l.database, "user", l.user, "addr", cc.c.RemoteAddr(), "reason", refused.Message)
		return cc.fatal(refused)
	}
	if err != nil {
		cc.d.log.Info("client asked for a database pgmts does not serve", "database", l.database, "user", l.user, "addr", cc.c.RemoteAddr())
		e := wire.Fatal("3D000", "database %q does not exist", l.database)
		e.Hint = "pgmts has no [databases] section for it and no \"*\" fallback section."
		return cc.fatal(e)
	}
	l.pool = pool
	if pt, ok := l.passthrough(); ok {
		pool.Backend.Passthrough(pt)
	}
	cc.phase = phasePreparing
	if cc.d.g.holds(pool) {
		cc.d.held[cc] = struct{}{} // SUSPEND: the login goes on at RESUME
		cc.flush()
		return gnet.None
	}
	return cc.prepare()
}

// prepare asks the client's pool to be ready for it, then finishes the
// login (ready).
func (cc *clientConn) prepare() gnet.Action {
	pool := cc.login.pool
	// Prepare answers at once when the pool already knows its server's
	// parameters; otherwise the answer comes from another goroutine.
	return cc.await(func(answer func(then func() gnet.Action)) {
		pool.Backend.Prepare(func(p map[string]string, err error) {
			answer(func() gnet.Action { return cc.ready(p, err) })
		})
	})
}

// ready finishes the login: ParameterStatus set, BackendKeyData, and
// ReadyForQuery.
func (cc *clientConn) ready(serverParams map[string]string, err error) gnet.Action {
	if cc.closed {
		return gnet.None
	}
	l := cc.login
	if err != nil {
		var we *wire.Error
		if !errors.As(err, &we) {
			we = wire.Fatal("08006", "%v", err)
		}
		cc.d.log.Info("client login failed at the server", "database", l.database, "user", l.user, "err", we.Error())
		return cc.fatal(we)
	}
	circuit := circuits.New(l.pool.Mode, l.settings)
	circuit.SetLoginReported(serverParams)
	out := l.out
	// Sorted on the stack, encoded without boxing: a login's garbage
	// would share size classes with the connection's long-lived objects
	// and leave holes among them once collected.
	var buf [64]string
	names := buf[:0]
	for name := range serverParams {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		value := serverParams[name]
		if v, ok := l.settings[strings.ToLower(name)]; ok {
			value = v
		}
		circuit.SetReported(name, value)
		out = wire.AppendParameterStatus(out, name, value)
	}
	// The client exists before it is registered: other goroutines reach
	// it through the registry (cancel requests, shutdown).
	cc.client = queue.NewClient(cc.d.g.newClientID(), l.pool, cc.d.responses, cc, circuit)
	cc.d.g.register(cc)
	if t, ok := cc.c.(*tlsConn); ok {
		t.client.Store(cc.client)
	}
	out = wire.Append(out, &pgproto3.BackendKeyData{ProcessID: cc.pid, SecretKey: cc.key[:]})
	out = append(out, wire.ReadyIdle...)
	_, _ = cc.c.Write(out)
	// Checked first: the arguments' boxes and the remote address (made at
	// each RemoteAddr call) would be garbage of every login.
	if cc.d.log.Enabled(context.Background(), slog.LevelDebug) {
		cc.d.log.Debug("client logged in", "client", cc.client.ID, "database", l.database, "user", l.user, "addr", cc.c.RemoteAddr())
	}
	cc.login = nil
	delete(cc.d.logins, cc)
	cc.phase = phaseReady
	cc.need = 5
	return gnet.None
}
