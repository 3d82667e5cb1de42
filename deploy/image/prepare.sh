#!/bin/sh
# prepare.sh writes what deploy/image/Dockerfile takes from the machine
# that builds the image, into a directory of the build context (.image by
# default); .sluice/sluice.hcl runs it on the runner before each build:
#
#   sh deploy/image/prepare.sh ca   [DIR]   DIR/ca-certificates.crt
#   sh deploy/image/prepare.sh debs [DIR]   DIR/debs/*.deb
#   sh deploy/image/prepare.sh all  [DIR]   both
#
# ca: the runner's own CA bundle. Go in the build container (and in the
# pipeline's container steps) downloads modules through GOPROXY over
# HTTPS, and the base image golang:local has no CA certificates: with the
# runner's bundle it trusts what the runner trusts, a TLS-inspecting proxy
# included. The bundle is bind-mounted into the build, never copied into
# the image.
#
# debs: the Debian packages of git, with the libraries it links, and of
# ca-certificates, downloaded by apt (which checks them against the signed
# archive), for the image: the runner prepares workspaces with git (clone,
# fetch over HTTPS), and the image needs the public CA certificates for
# GitHub and the registries. No base image with a package manager can be
# pulled here (only `sluice images`' busybox:local and golang:local), so
# the Dockerfile unpacks these packages onto busybox:local instead.
# Packages git depends on but does not need to clone, fetch and check out
# (perl for its scripts, its manual) are left out, with what only they
# need. The runner must therefore be a Debian (or Debian-based) host with
# apt; the image gets that release's packages for the runner's
# architecture.
set -eu

what=${1:-all}
dir=${2:-.image}

# Packages not followed when collecting git's dependencies: perl and what
# it needs serve git's Perl scripts (send-email, svn, ...), git-man its
# manual; debconf and openssl are ca-certificates' configuration and
# update-ca-certificates, which the Dockerfile replaces by concatenating
# the certificates.
skip=" perl perl-base perl-modules liberror-perl libperl git-man debconf openssl "

fail() {
	echo "prepare.sh: $*" >&2
	exit 1
}

ca() {
	for f in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt \
		/etc/ssl/ca-bundle.pem /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem /etc/ssl/cert.pem; do
		if [ -n "$f" ] && [ -s "$f" ]; then
			mkdir -p "$dir"
			cp "$f" "$dir/ca-certificates.crt"
			echo "prepare.sh: $dir/ca-certificates.crt from $f"
			return
		fi
	done
	fail "no CA bundle found on this host (tried \$SSL_CERT_FILE and the usual paths); set SSL_CERT_FILE to one"
}

skipped() {
	case "$skip" in *" $1 "*) return 0 ;; esac
	case "$1" in perl-modules-* | libperl[0-9]*) return 0 ;; esac
	return 1
}

# deps prints the packages the packages named depend on (Depends and
# Pre-Depends): the first of each set of alternatives, and for a virtual
# package the first package that provides it.
deps() {
	apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances "$@" | awk '
		# "pkg" starts a package; then "  Depends: x", " |Depends: a" (an
		# alternative; its group ends with a line without "|"), and
		# "    p" (a package that provides the virtual x).
		/^[^ ]/ { ingroup = 0; virtual = 0; next }
		/^ [ |](Pre)?Depends: / {
			alt = substr($0, 2, 1) == "|"
			name = $2
			take = !ingroup
			ingroup = alt
			virtual = 0
			if (!take) next
			if (name ~ /^</) { virtual = 1; next }
			sub(/:.*/, "", name); print name
			next
		}
		/^    [^ ]/ && virtual { name = $1; sub(/:.*/, "", name); print name; virtual = 0; next }
		/^  [A-Za-z]/ { virtual = 0 }
	'
}

# closure prints the packages named and everything they depend on, but for
# the skipped packages and what only they need; one apt-cache per level.
closure() {
	seen=" "
	level="$*"
	while [ -n "$level" ]; do
		next=""
		for p in $level; do
			case "$seen" in *" $p "*) continue ;; esac
			skipped "$p" && continue
			seen="$seen$p "
			next="$next $p"
		done
		[ -n "$next" ] || break
		# shellcheck disable=SC2086
		level=$(deps $next | sort -u | tr '\n' ' ')
	done
	echo $seen
}

debs() {
	command -v apt-get >/dev/null && command -v apt-cache >/dev/null ||
		fail "the image's git comes from Debian packages, downloaded with apt; run this on a Debian host"
	if ! apt-cache show git >/dev/null 2>&1; then
		# A machine that never ran apt-get update knows no packages.
		[ "$(id -u)" -eq 0 ] || fail "apt knows no package git; run apt-get update first"
		apt-get update -qq || fail "apt-get update failed"
	fi
	pkgs=$(closure git ca-certificates)
	rm -rf "$dir/debs"
	mkdir -p "$dir/debs"
	# shellcheck disable=SC2086
	(cd "$dir/debs" && apt-get -qq -o APT::Sandbox::User=root download $pkgs) ||
		fail "downloading $pkgs failed"
	echo "prepare.sh: $dir/debs: $(ls "$dir/debs" | wc -l) packages: $pkgs"
}

case "$what" in
ca) ca ;;
debs) debs ;;
all)
	ca
	debs
	;;
*) fail "unknown step $what; use ca, debs or all" ;;
esac
