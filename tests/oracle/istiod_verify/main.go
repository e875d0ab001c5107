// istiod-verify: the oracle of the differential tests. It runs exactly the check istiod runs at start-up on a
// plug-in CA (istio/istio security/pkg/pki/util: NewVerifiedKeyCertBundleFromFile -> Verify), with the
// standard library only, so the test judges cacerts-sync by the Go crypto/x509 istiod is built with.
//
// Batch use: one directory per line on stdin (each holding root-cert.pem, ca-cert.pem, ca-key.pem,
// cert-chain.pem); one JSON line per directory on stdout: {"dir":..., "accept":bool, "error":"..."}.
// `istiod-verify -version` prints the Go version it was built with.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// verify is istiod's util.Verify, step for step.
func verify(certBytes, privKeyBytes, certChainBytes, rootCertBytes []byte) error {
	// 1. Pools: AppendCertsFromPEM skips blocks that are not CERTIFICATE or do not parse.
	rcp := x509.NewCertPool()
	rcp.AppendCertsFromPEM(rootCertBytes)
	icp := x509.NewCertPool()
	icp.AppendCertsFromPEM(certChainBytes)
	opts := x509.VerifyOptions{Intermediates: icp, Roots: rcp}

	// 2. The first PEM block of ca-cert.pem (util.ParsePemEncodedCertificate), verified with default options.
	cert, err := parsePemEncodedCertificate(certBytes)
	if err != nil {
		return fmt.Errorf("failed to parse cert PEM: %v", err)
	}
	chains, err := cert.Verify(opts)
	if len(chains) == 0 || err != nil {
		return fmt.Errorf("cannot verify the cert with the provided root chain and cert pool with error: %v", err)
	}

	// 3. The key, parsed by its PEM label (util.ParsePemEncodedKey).
	if _, err = parsePemEncodedKey(privKeyBytes); err != nil {
		return fmt.Errorf("failed to parse private key PEM: %v", err)
	}

	// 4. Certificate and key must form a TLS key pair.
	if _, err := tls.X509KeyPair(certBytes, privKeyBytes); err != nil {
		return fmt.Errorf("the cert does not match the key: %v", err)
	}
	return nil
}

func parsePemEncodedCertificate(certBytes []byte) (*x509.Certificate, error) {
	cb, _ := pem.Decode(certBytes)
	if cb == nil {
		return nil, fmt.Errorf("invalid PEM encoded certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("failed to parse X.509 certificate")
	}
	return cert, nil
}

func parsePemEncodedKey(keyBytes []byte) (any, error) {
	kb, _ := pem.Decode(keyBytes)
	if kb == nil {
		return nil, fmt.Errorf("invalid PEM-encoded key")
	}
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err := x509.ParseECPrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the ECDSA private key: %v", err)
		}
		return key, nil
	case "RSA PRIVATE KEY":
		key, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the RSA private key: %v", err)
		}
		return key, nil
	case "PRIVATE KEY":
		key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the PKCS8 private key: %v", err)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("invalid PEM-encoded key with type %s", kb.Type)
	}
}

type result struct {
	Dir    string `json:"dir"`
	Accept bool   `json:"accept"`
	Error  string `json:"error,omitempty"`
}

func judge(dir string) result {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	var files [4][]byte
	for i, name := range []string{"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"} {
		b, err := read(name)
		if err != nil {
			return result{Dir: dir, Error: "oracle: " + err.Error()}
		}
		files[i] = b
	}
	if err := verify(files[0], files[1], files[2], files[3]); err != nil {
		return result{Dir: dir, Error: err.Error()}
	}
	return result{Dir: dir, Accept: true}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-version" {
		fmt.Println(runtime.Version())
		return
	}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 1024*1024)
	for in.Scan() {
		if line := in.Text(); line != "" {
			if err := out.Encode(judge(line)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	if err := in.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
