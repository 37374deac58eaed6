#!/bin/sh
# trusted_ca: trust the CA certificates of the VM's trusted_ca_files, which
# phoenix read on the node and gives this script in its context
# ($PHOENIX_CONTEXT: phoenix.trusted_ca[], one certificate each), as the
# original staged step-ca's root on the node and installed it here.
#   - each certificate goes to /usr/local/share/ca-certificates/phoenix/FILE
#     (0644); certificates phoenix put there before and the config no longer
#     names are removed;
#   - update-ca-certificates then adds them to /etc/ssl/certs and its
#     bundle (with --fresh when one was removed), only when something
#     changed;
#   - a running Docker daemon is restarted so it trusts them too, as the
#     original did.
# Debian/Ubuntu guests (update-ca-certificates; python3, which cloud-init
# brings, reads the context). Safe to run again: nothing changes when the
# certificates are in place.
set -eu

dir=/usr/local/share/ca-certificates/phoenix
: "${PHOENIX_CONTEXT:?trusted_ca: no context (PHOENIX_CONTEXT); phoenix runs this script}"
command -v python3 >/dev/null 2>&1 || { echo "trusted_ca: python3 is missing: it reads the context" >&2; exit 1; }
if ! command -v update-ca-certificates >/dev/null 2>&1; then
	command -v apt-get >/dev/null 2>&1 || { echo "trusted_ca: update-ca-certificates is missing, and there is no apt-get to install ca-certificates" >&2; exit 1; }
	echo "trusted_ca: installing ca-certificates"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends ca-certificates
fi

staged=$(mktemp -d)
trap 'rm -rf "$staged"' EXIT
# One file per certificate, named as phoenix named it (NAME.crt), and its
# subject on stdout for the log.
python3 - "$PHOENIX_CONTEXT" "$staged" <<'EOF'
import json, os, sys
ctx = json.load(open(sys.argv[1]))
certs = ctx.get("phoenix", {}).get("trusted_ca") or []
if not certs:
    sys.exit("trusted_ca: the context has no certificates (trusted_ca_files)")
for c in certs:
    name = c["file"]
    if "/" in name or name.startswith(".") or not name.endswith(".crt"):
        sys.exit("trusted_ca: bad file name %r in the context" % name)
    with open(os.path.join(sys.argv[2], name), "w") as f:
        f.write(c["pem"])
    print("%s %s (%s, sha256 %s)" % (name, c["subject"], c["source"], c["sha256"]))
EOF

mkdir -p "$dir"
changed=0
removed=0
for f in "$staged"/*.crt; do
	name=${f##*/}
	if cmp -s "$f" "$dir/$name"; then
		echo "trusted_ca: $name is in place"
		continue
	fi
	install -m 0644 "$f" "$dir/.$name.tmp"
	mv -f "$dir/.$name.tmp" "$dir/$name"
	echo "trusted_ca: wrote $dir/$name"
	changed=1
done
for f in "$dir"/*.crt; do
	[ -e "$f" ] || continue
	if [ ! -e "$staged/${f##*/}" ]; then
		rm -f "$f"
		echo "trusted_ca: removed $f (no longer in trusted_ca_files)"
		changed=1 removed=1
	fi
done

if [ "$changed" = 0 ]; then
	echo "trusted_ca: nothing to do"
	exit 0
fi
if [ "$removed" = 1 ]; then
	update-ca-certificates --fresh
else
	update-ca-certificates
fi
for f in "$staged"/*.crt; do
	name=${f##*/}
	link=/etc/ssl/certs/${name%.crt}.pem
	if [ "$(readlink "$link" 2>/dev/null)" != "$dir/$name" ]; then
		echo "trusted_ca: update-ca-certificates did not add $name ($link is missing)" >&2
		exit 1
	fi
done
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
	echo "trusted_ca: restarting docker so it trusts the certificates"
	systemctl restart docker
fi
echo "trusted_ca: done"
