#!/bin/sh
# base_setup: what every guest of the original project got first.
#   - IPv6 off, as the original did with sysctl: kept in
#     /etc/sysctl.d/90-phoenix-base.conf for every boot, and applied now
#     where the kernel lets this guest (a container's /proc/sys is often
#     read-only: then at its next boot);
#   - ufw off when it is installed (the original: ufw disable);
#   - the base packages below (the guest agent phoenix talks to, and what
#     scripts use: curl, and jq to read $PHOENIX_CONTEXT), installed with
#     apt-get when missing, the agent enabled where systemd runs.
# Debian/Ubuntu guests (apt-get). Safe to run again: each part checks first
# and says what it found. Replace it with your own base_setup.sh in a
# --feature-dir to do otherwise.
set -eu

packages="qemu-guest-agent ca-certificates curl jq"
conf=/etc/sysctl.d/90-phoenix-base.conf

# --- IPv6
want="# phoenix base_setup: IPv6 off, as the original project ran its guests
net.ipv6.conf.all.disable_ipv6 = 1
net.ipv6.conf.default.disable_ipv6 = 1
net.ipv6.conf.lo.disable_ipv6 = 1"
if [ "$(cat "$conf" 2>/dev/null)" = "$want" ]; then
	echo "base_setup: $conf is in place"
else
	mkdir -p /etc/sysctl.d
	printf '%s\n' "$want" >"$conf.tmp"
	chmod 0644 "$conf.tmp"
	mv -f "$conf.tmp" "$conf"
	echo "base_setup: wrote $conf (IPv6 off at every boot)"
fi
if [ ! -e /proc/sys/net/ipv6/conf/all/disable_ipv6 ]; then
	echo "base_setup: this kernel has no IPv6; nothing to switch off now"
elif [ "$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6)" = 1 ] &&
	[ "$(cat /proc/sys/net/ipv6/conf/default/disable_ipv6)" = 1 ]; then
	echo "base_setup: IPv6 is off"
elif [ -w /proc/sys/net/ipv6/conf/all/disable_ipv6 ]; then
	sysctl -q -p "$conf"
	echo "base_setup: switched IPv6 off"
else
	echo "base_setup: /proc/sys is read-only here (a container?): IPv6 goes off at the next boot"
fi

# --- ufw
if command -v ufw >/dev/null 2>&1; then
	if ufw status 2>/dev/null | grep -q '^Status: active'; then
		ufw disable
		echo "base_setup: ufw disabled"
	else
		echo "base_setup: ufw is inactive"
	fi
else
	echo "base_setup: ufw is not installed; nothing to disable"
fi

# --- packages
if ! command -v apt-get >/dev/null 2>&1; then
	echo "base_setup: this feature supports Debian/Ubuntu (apt-get) guests only" >&2
	exit 1
fi
missing=""
for p in $packages; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	echo "base_setup: installing$missing"
	apt-get update -q
	# shellcheck disable=SC2086 # a list of package names
	apt-get install -y -q --no-install-recommends $missing
else
	echo "base_setup: packages present: $packages"
fi
if [ -d /run/systemd/system ] && ! systemctl is-enabled --quiet qemu-guest-agent 2>/dev/null; then
	# Its unit is static on some releases (started by udev): enabling is best effort.
	systemctl enable --now qemu-guest-agent 2>/dev/null || systemctl start qemu-guest-agent
	echo "base_setup: qemu-guest-agent started"
fi
echo "base_setup: done"
