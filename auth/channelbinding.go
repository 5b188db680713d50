package auth

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/xdg-go/scram"
)

// ServerEndPoint is the tls-server-end-point channel binding data (RFC 5929)
// of pgmts's own certificate: what a SCRAM-SHA-256-PLUS client hashes from
// the certificate it was shown.
func ServerEndPoint(leaf *x509.Certificate) ([]byte, error) {
	// The library computes it from a peer's view of the connection.
	cb, err := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
	if err != nil {
		return nil, err
	}
	return cb.Data, nil
}
