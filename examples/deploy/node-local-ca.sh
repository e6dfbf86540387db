#!/bin/sh
# node-local-ca.sh [DIR]: the node-local CA between kubelet-gate and the kubelet behind it.
#
# Makes, in DIR (default /etc/kubelet-gate/pki), with openssl:
#   ca.crt                            the node-local CA (ECDSA P-256, CA_DAYS, default 10 years),
#                                     made once and reused; its key is CA_KEY (default
#                                     node-local-ca.key beside DIR), outside DIR, so that what
#                                     mounts DIR (the DaemonSet) never sees it
#   kubelet-loopback.crt, .key        the kubelet's serving certificate for 127.0.0.1:10250
#                                     (SANs IP:127.0.0.1, DNS:localhost; server auth)
#   gateway-client.crt, .key          kubelet-gate's client certificate (CN kubelet-gate;
#                                     client auth), the identity the kubelet authorizes
# The two leaves last DAYS (default 365) and are issued again when they are missing or within
# RENEW_DAYS (default 30) of expiry, so a daily timer can run this. Both programs reload them:
# kubelet-gate its client certificate (upstream.secure.certFile/keyFile), the kubelet its
# tlsCertFile (ReloadKubeletServerCertificateFile, on by default since Kubernetes 1.31).
#
# CA_KEY stays on the node, readable by root only, so the leaves can be renewed; whoever can
# read it can already read the kubelet's own keys. Delete it to make a new CA on the next run
# (then restart both programs: each reads the CA itself once, at start).
set -eu

dir=${1:-/etc/kubelet-gate/pki}
days=${DAYS:-365}
ca_days=${CA_DAYS:-3650}
renew_days=${RENEW_DAYS:-30}

umask 077
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
ca_key=${CA_KEY:-$(dirname "$dir")/node-local-ca.key}
cd "$dir"
chmod 0755 "$dir"
work=$(mktemp -d "$dir/.issue.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ! -s "$ca_key" ] || [ ! -s ca.crt ]; then
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$work/ca.key" -out "$work/ca.crt" -days "$ca_days" \
        -subj "/CN=kubelet-gate node-local CA $(uname -n)" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    chmod 0644 "$work/ca.crt"
    mv "$work/ca.key" "$ca_key"
    mv "$work/ca.crt" ca.crt
    echo "made the node-local CA: $dir/ca.crt (key $ca_key)"
fi

# issue NAME SUBJECT EXTENSIONS: a new key and certificate unless the current one has more
# than renew_days left. The key moves into place first: each reader rejects a mismatched pair
# and keeps its current one until both halves are new.
issue() {
    name=$1
    if [ -s "$name.crt" ] && [ -s "$name.key" ] &&
        openssl x509 -in "$name.crt" -noout -checkend $((renew_days * 86400)) >/dev/null 2>&1 &&
        openssl verify -CAfile ca.crt "$name.crt" >/dev/null 2>&1; then
        return 0
    fi
    printf '%s\n' "$3" >"$work/$name.ext"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$work/$name.key" -out "$work/$name.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$work/$name.csr" -CA ca.crt -CAkey "$ca_key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" \
        -extfile "$work/$name.ext" -out "$work/$name.crt" 2>/dev/null
    chmod 0644 "$work/$name.crt"
    mv "$work/$name.key" "$name.key"
    mv "$work/$name.crt" "$name.crt"
    echo "issued $dir/$name.crt ($days days)"
}

issue kubelet-loopback "/CN=kubelet loopback $(uname -n)" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier=keyid"

issue gateway-client "/CN=kubelet-gate" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid"
