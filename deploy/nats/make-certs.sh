#!/usr/bin/env bash
# Makes the TLS material of a NATS deployment with openssl: a CA, the server's certificate (for the
# names given) and one client certificate that every node presents (mutual TLS).
#
#   deploy/nats/make-certs.sh <dir> [server-name ...]     (default names: nats localhost 127.0.0.1)
#
# Writes <dir>/ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem, client-key.pem (keys
# mode 600). Used by `npm run cluster` (into DATA_DIR) and the tests (into a temporary directory);
# for a Swarm, turn the files into Docker secrets (docs/OPERATIONS.md). Keys never go into git.
set -euo pipefail
dir=${1:?usage: make-certs.sh <dir> [server-name ...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(nats localhost 127.0.0.1)
san=""
for n in "${names[@]}"; do
	if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}
days=${CERT_DAYS:-825}
mkdir -p "$dir"
cd "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
	-subj "/CN=moleculer-commerce NATS CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
issue() { # issue <name> <subject CN> <extensions>
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" \
		-keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
	printf '%s\n' "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
		-extfile "$1.ext" -out "$1.pem" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
issue server "${names[0]}" "subjectAltName=$san
extendedKeyUsage=serverAuth"
issue client "moleculer-commerce node" "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem
echo "certificates for ${names[*]} in $dir"
