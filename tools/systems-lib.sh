# Shared by tools/compare-ingest.sh and tools/storage-figures.sh (sourced, not run):
# installing a peer system from Debian's packages when it is missing. The sourcing
# script defines `log MESSAGE`, `note MESSAGE`, INSTALL (0: never install) and the
# associative arrays SKIP (system -> why it is skipped) and VERSION (system -> version).

apt_install() { # PACKAGE: apt-get install, with one `apt-get update` retry
  local pkg=$1 sudo=()
  command -v apt-get >/dev/null || { echo "apt-get not found"; return 1; }
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "not root and no sudo"; return 1; }
    sudo=(sudo -n)
  fi
  log "running: apt-get install -y $pkg"
  if timeout 600 env DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "$pkg" >&2; then return 0; fi
  log "running: apt-get update, then apt-get install -y $pkg again"
  timeout 600 "${sudo[@]}" apt-get update -q >&2 || true
  timeout 600 env DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "$pkg" >&2 ||
    { echo "apt-get install $pkg failed"; return 1; }
}

ensure_system() { # SYSTEM COMMAND PACKAGE WANTED_VERSION
  local sys=$1 cmd=$2 pkg=$3 want=$4 why before after p version
  if ! command -v "$cmd" >/dev/null; then
    if ((!INSTALL)); then
      SKIP[$sys]="$cmd not installed (--no-install)"
      return
    fi
    log "$cmd not found: installing Debian package $pkg"
    before=$(pgrep -x "${cmd:0:15}" || true)
    if ! why=$(apt_install "$pkg"); then
      SKIP[$sys]="could not install Debian package $pkg: $why"
      return
    fi
    # A package may start its own service (where the init system lets it): stop it.
    after=$(pgrep -x "${cmd:0:15}" || true)
    for p in $after; do
      grep -qx "$p" <<<"$before" && continue
      log "the $pkg package started $cmd (pid $p): service $pkg stop"
      timeout 60 service "$pkg" stop >&2 || log "could not stop it; it stays running (idle)"
    done
    command -v "$cmd" >/dev/null || { SKIP[$sys]="$pkg installed but $cmd not on PATH"; return; }
  fi
  version=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo unknown)
  VERSION[$sys]="$version (Debian package $pkg)"
  [[ $version == "$want"* ]] || note "$sys: wanted version $want, found $version; running it anyway"
}

