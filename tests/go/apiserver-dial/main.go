// Command apiserver-dial is the Go side of kubelet-gate's differential test of `diagnose`
// (tests/integration/diagnose_go.rs). It uses the standard library only, so that the test
// builds it with `go build main.go` and nothing to download.
//
//	apiserver-dial dial  -url URL [-ca FILE] [-cert FILE -key FILE] [-now UNIX]
//	apiserver-dial serve -client-ca FILE [-cert FILE -key FILE] [-allow USER]...
//	apiserver-dial issue -out PREFIX [-ca PREFIX] [-key p256|rsa1024|rsa2048] [-sig sha1]
//	                     -cn CN [-dns A,B] [-ip A,B] [-is-ca] [-eku server|client|none]
//	                     -not-before UNIX -not-after UNIX [-chain]
//
// dial is kube-apiserver calling a kubelet for `kubectl logs`: an HTTPS GET with the client
// configuration kube-apiserver builds from --kubelet-certificate-authority (RootCAs, or no
// verification at all without it) and --kubelet-client-certificate/--kubelet-client-key, the
// server name taken from the dialled host, as net/http does. It prints one line: the error
// exactly as err.Error() reads (what kube-apiserver logs and kubectl shows), or the status and
// body of the kubelet's answer. Exit 0: the call went through; 1: it did not (an error, or the
// kubelet answered 401 or 403); 2: bad usage.
//
// serve is a kubelet's port 10250 as far as the TLS handshake and authentication go: Go's TLS
// server (what a real kubelet runs), RequestClientCert with the client CA's names, client
// certificates verified as the x509 authenticator does, and the kubelet's 401 and 403 bodies.
// Without -cert it has no serving certificate yet and fails every handshake, as a kubelet with
// serverTLSBootstrap whose CSR is pending does. It prints the address it listens on, then serves
// until its standard input closes.
//
// issue writes PREFIX.crt and PREFIX.key (PKCS#8): the certificates rcgen cannot make (SHA-1
// signatures, RSA-1024 keys). Every certificate is made at run time, never kept.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode"
)

func main() {
	if len(os.Args) < 2 {
		usage("a mode: dial, serve or issue")
	}
	switch os.Args[1] {
	case "dial":
		dial(os.Args[2:])
	case "serve":
		serve(os.Args[2:])
	case "issue":
		issue(os.Args[2:])
	default:
		usage("unknown mode " + os.Args[1])
	}
}

func usage(msg string) {
	fmt.Fprintln(os.Stderr, "apiserver-dial:", msg)
	os.Exit(2)
}

// ---- dial: kube-apiserver's GET of a kubectl logs URL ----

func dial(args []string) {
	fs := flag.NewFlagSet("dial", flag.ExitOnError)
	target := fs.String("url", "", "the kubelet URL")
	caFile := fs.String("ca", "", "--kubelet-certificate-authority")
	certFile := fs.String("cert", "", "--kubelet-client-certificate")
	keyFile := fs.String("key", "", "--kubelet-client-key")
	now := fs.Int64("now", 0, "the clock, in Unix seconds (default: the real one)")
	_ = fs.Parse(args)
	if *target == "" {
		usage("dial needs -url")
	}

	// k8s.io/client-go/transport TLSConfigFor: TLS 1.2 at least; with no CA the kubelet's
	// certificate is not verified at all (kube-apiserver without --kubelet-certificate-authority).
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile == "" {
		config.InsecureSkipVerify = true
	} else {
		data, err := os.ReadFile(*caFile)
		if err != nil {
			usage(err.Error())
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			usage("no certificate in " + *caFile)
		}
		config.RootCAs = pool
	}
	if *certFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			usage(err.Error())
		}
		// client-go presents its certificate through GetClientCertificate, whatever CAs the
		// server names.
		config.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &pair, nil
		}
	}
	if *now != 0 {
		at := time.Unix(*now, 0).UTC()
		config.Time = func() time.Time { return at }
	}
	transport := &http.Transport{TLSClientConfig: config, Proxy: nil, DisableKeepAlives: true}
	client := &http.Client{Transport: transport, Timeout: 60 * time.Second}
	resp, err := client.Get(*target)
	if err != nil {
		fmt.Println(err.Error())
		os.Exit(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16*1024))
	fmt.Printf("%d %s\n", resp.StatusCode, strings.TrimRightFunc(string(body), unicode.IsSpace))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		os.Exit(1)
	}
}

// ---- serve: a kubelet's TLS and authentication ----

type users []string

func (u *users) String() string     { return strings.Join(*u, ",") }
func (u *users) Set(v string) error { *u = append(*u, v); return nil }

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	certFile := fs.String("cert", "", "tlsCertFile (none: no serving certificate yet)")
	keyFile := fs.String("key", "", "tlsPrivateKeyFile")
	clientCA := fs.String("client-ca", "", "authentication.x509.clientCAFile")
	var allowed users
	fs.Var(&allowed, "allow", "a user authorized for nodes/proxy and nodes/healthz")
	_ = fs.Parse(args)

	data, err := os.ReadFile(*clientCA)
	if err != nil {
		usage(err.Error())
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(data) {
		usage("no certificate in " + *clientCA)
	}
	var serving *tls.Certificate
	if *certFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			usage(err.Error())
		}
		serving = &pair
	}
	config := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// k8s.io/kubernetes/pkg/kubelet/certificate NewKubeletServerCertificateManager: with
		// no certificate yet, the handshake fails (Go's server answers internal_error).
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if serving == nil {
				return nil, errors.New("no serving certificate available for the kubelet")
			}
			return serving, nil
		},
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  clientCAs,
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		usage(err.Error())
	}
	fmt.Println(listener.Addr().String())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := authenticate(r, clientCAs)
		if !ok {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		subresources := "[proxy]"
		if r.URL.Path == "/healthz" {
			subresources = "[healthz proxy]"
		}
		if !contains(allowed, user) {
			http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=get, resource=nodes, subresource(s)=%s)", user, subresources), http.StatusForbidden)
			return
		}
		if r.URL.Path == "/healthz" {
			fmt.Fprint(w, "ok")
			return
		}
		if parts := strings.Split(r.URL.Path, "/"); len(parts) == 5 && parts[1] == "containerLogs" {
			http.Error(w, fmt.Sprintf("pod %q does not exist", parts[3]), http.StatusNotFound)
			return
		}
		http.NotFound(w, r)
	})
	server := &http.Server{Handler: handler, ReadHeaderTimeout: time.Minute}
	_ = server.Serve(tls.NewListener(listener, config))
}

// The x509 request authenticator of k8s.io/apiserver: the chain verified against the client
// CA for client auth; the user is the CN.
func authenticate(r *http.Request, roots *x509.CertPool) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range r.TLS.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	leaf := r.TLS.PeerCertificates[0]
	if _, err := leaf.Verify(opts); err != nil || leaf.Subject.CommonName == "" {
		return "", false
	}
	return leaf.Subject.CommonName, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ---- issue: certificates rcgen cannot make ----

func issue(args []string) {
	fs := flag.NewFlagSet("issue", flag.ExitOnError)
	out := fs.String("out", "", "writes PREFIX.crt and PREFIX.key")
	caPrefix := fs.String("ca", "", "the issuer's PREFIX.crt and PREFIX.key (none: self-signed)")
	keyType := fs.String("key", "p256", "p256, rsa1024 or rsa2048")
	sig := fs.String("sig", "", "sha1 to sign with SHA-1 (default: Go's choice for the issuer key)")
	cn := fs.String("cn", "", "subject CN")
	dns := fs.String("dns", "", "DNS SANs, comma-separated")
	ips := fs.String("ip", "", "IP SANs, comma-separated")
	isCA := fs.Bool("is-ca", false, "a CA certificate")
	eku := fs.String("eku", "server", "server, client or none")
	notBefore := fs.Int64("not-before", 0, "Unix seconds")
	notAfter := fs.Int64("not-after", 0, "Unix seconds")
	chain := fs.Bool("chain", false, "append the issuer's certificate file to PREFIX.crt")
	_ = fs.Parse(args)
	if *out == "" || *notBefore == 0 || *notAfter == 0 {
		usage("issue needs -out, -not-before and -not-after")
	}

	var key crypto.Signer
	var err error
	switch *keyType {
	case "p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa1024":
		key, err = rsa.GenerateKey(rand.Reader, 1024)
	case "rsa2048":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		usage("unknown -key " + *keyType)
	}
	if err != nil {
		usage(err.Error())
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		usage(err.Error())
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: *cn},
		NotBefore:             time.Unix(*notBefore, 0),
		NotAfter:              time.Unix(*notAfter, 0),
		BasicConstraintsValid: true,
		IsCA:                  *isCA,
	}
	if *isCA {
		template.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		template.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		switch *eku {
		case "server":
			template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		case "client":
			template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		case "none":
		default:
			usage("unknown -eku " + *eku)
		}
	}
	template.DNSNames = split(*dns)
	for _, s := range split(*ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			usage("bad -ip " + s)
		}
		template.IPAddresses = append(template.IPAddresses, ip)
	}

	parent, signer := template, key
	var parentPEM []byte
	if *caPrefix != "" {
		parentPEM, err = os.ReadFile(*caPrefix + ".crt")
		if err != nil {
			usage(err.Error())
		}
		block, _ := pem.Decode(parentPEM)
		if block == nil {
			usage("no PEM in " + *caPrefix + ".crt")
		}
		if parent, err = x509.ParseCertificate(block.Bytes); err != nil {
			usage(err.Error())
		}
		keyPEM, err := os.ReadFile(*caPrefix + ".key")
		if err != nil {
			usage(err.Error())
		}
		block, _ = pem.Decode(keyPEM)
		if block == nil {
			usage("no PEM in " + *caPrefix + ".key")
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			usage(err.Error())
		}
		var ok bool
		if signer, ok = parsed.(crypto.Signer); !ok {
			usage("the issuer key cannot sign")
		}
	}
	if *sig == "sha1" {
		switch signer.Public().(type) {
		case *rsa.PublicKey:
			template.SignatureAlgorithm = x509.SHA1WithRSA
		case *ecdsa.PublicKey:
			template.SignatureAlgorithm = x509.ECDSAWithSHA1
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, key.Public(), signer)
	if err != nil {
		usage(err.Error())
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		usage(err.Error())
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if *chain {
		certPEM = append(certPEM, parentPEM...)
	}
	write(*out+".crt", certPEM)
	write(*out+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func split(list string) []string {
	if list == "" {
		return nil
	}
	return strings.Split(list, ",")
}

func write(path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		usage(err.Error())
	}
}
