package sharedserver

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/auth"
)

// loginPassthrough logs in to PostgreSQL with what a client's login left
// (SCRAM keys or an md5 hash) instead of a password, which pgconn cannot
// do. It takes the addresses and TLS configs from pgconn's cfg, built from
// the same connection string as other logins, and tries them in pgconn's
// order: with server_tls_mode = prefer, TLS first, then plaintext on a new
// connection. It returns what pgconn's Hijack would.
func loginPassthrough(ctx context.Context, cfg *pgconn.Config, pt auth.Passthrough) (*pgconn.HijackedConn, error) {
	tries := append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
	var errs []error
	for _, try := range tries {
		hj, err := loginOnce(ctx, cfg, try, pt)
		if err == nil {
			return hj, nil
		}
		errs = append(errs, err)
		// As pgconn: another address or TLS mode will not fix these.
		var pe *pgconn.PgError
		if errors.As(err, &pe) && slices.Contains([]string{"28P01", "3D000", "42501"}, pe.Code) || ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func loginOnce(ctx context.Context, cfg *pgconn.Config, try *pgconn.FallbackConfig, pt auth.Passthrough) (*pgconn.HijackedConn, error) {
	network, address := pgconn.NetworkAddress(try.Host, try.Port)
	conn, err := cfg.DialFunc(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	hj, err := startup(conn, cfg, try.TLSConfig, pt)
	if err != nil {
		conn.Close() // under a TLS conn too
		return nil, fmt.Errorf("%s: %w", address, err)
	}
	_ = hj.Conn.SetDeadline(time.Time{})
	return hj, nil
}

// startup negotiates TLS when tlsConfig is set, then logs in as cfg.User.
func startup(conn net.Conn, cfg *pgconn.Config, tlsConfig *tls.Config, pt auth.Passthrough) (*pgconn.HijackedConn, error) {
	hj := &pgconn.HijackedConn{Conn: conn, Config: cfg, ParameterStatuses: map[string]string{}}
	if tlsConfig != nil {
		if err := binary.Write(conn, binary.BigEndian, []int32{8, 80877103}); err != nil {
			return nil, err
		}
		var answer [1]byte
		if _, err := io.ReadFull(conn, answer[:]); err != nil {
			return nil, err
		}
		if answer[0] != 'S' {
			return nil, errors.New("server refused TLS connection")
		}
		tc := tls.Client(conn, tlsConfig)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("tls error: %w", err)
		}
		hj.Conn, hj.TLSConfig = tc, tlsConfig
	}
	fe := pgproto3.NewFrontend(hj.Conn, hj.Conn)
	hj.Frontend = fe
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": cfg.User, "database": cfg.Database}})
	var sc *auth.SCRAMClient
	for {
		if err := fe.Flush(); err != nil {
			return hj, err
		}
		msg, err := fe.Receive()
		if err != nil {
			return hj, err
		}
		switch msg := msg.(type) {
		case *pgproto3.AuthenticationOk, *pgproto3.NoticeResponse, *pgproto3.NegotiateProtocolVersion:
		case *pgproto3.AuthenticationSASL:
			if pt.SCRAM == nil || !slices.Contains(msg.AuthMechanisms, "SCRAM-SHA-256") {
				return hj, fmt.Errorf("PostgreSQL asks user %q for SASL %v, and pgmts holds no SCRAM verifier for it", cfg.User, msg.AuthMechanisms)
			}
			sc = auth.NewSCRAMClient(*pt.SCRAM)
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(sc.First())})
		case *pgproto3.AuthenticationSASLContinue:
			if sc == nil {
				return hj, errors.New("SASL continue before SASL start")
			}
			final, err := sc.Final(string(msg.Data))
			if err != nil {
				return hj, err
			}
			fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
		case *pgproto3.AuthenticationSASLFinal:
			if sc == nil {
				return hj, errors.New("SASL final before SASL start")
			}
			if err := sc.Verify(string(msg.Data)); err != nil {
				return hj, err
			}
		case *pgproto3.AuthenticationMD5Password:
			if pt.MD5 == "" {
				return hj, fmt.Errorf("PostgreSQL asks user %q for an md5 password, and pgmts holds neither its password nor its md5 hash", cfg.User)
			}
			sum := md5.Sum([]byte(pt.MD5[len("md5"):] + string(msg.Salt[:])))
			fe.Send(&pgproto3.PasswordMessage{Password: "md5" + hex.EncodeToString(sum[:])})
		case *pgproto3.AuthenticationCleartextPassword:
			return hj, fmt.Errorf("PostgreSQL asks user %q for a cleartext password, which pgmts does not have (it holds only a hash or verifier)", cfg.User)
		case *pgproto3.ParameterStatus:
			hj.ParameterStatuses[msg.Name] = msg.Value
		case *pgproto3.BackendKeyData:
			hj.PID, hj.SecretKey = msg.ProcessID, slices.Clone(msg.SecretKey)
		case *pgproto3.ErrorResponse:
			err := error(pgconn.ErrorResponseToPgError(msg))
			if sc != nil {
				err = fmt.Errorf("PostgreSQL refused the SCRAM keys a client proved for user %q: the SCRAM verifier pgmts has for it ([users], auth_file or auth_query) must be the one in pg_authid: %w", cfg.User, err)
			}
			return hj, err
		case *pgproto3.ReadyForQuery:
			if fe.ReadBufferLen() != 0 {
				return hj, errors.New("backend sent data before the first request")
			}
			hj.TxStatus = msg.TxStatus
			return hj, nil
		default:
			return hj, fmt.Errorf("unexpected message %T during login", msg)
		}
	}
}
