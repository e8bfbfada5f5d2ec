#!/usr/bin/env bash
# Install the programs some tests compare regbench against, so those tests run instead of skipping:
# ImageMagick (the corruption tests' motion-blur reference). Debian/Ubuntu only (apt-get); run it as root or with
# sudo. Idempotent: when every tool is there it changes nothing.
set -euo pipefail

log() { printf '[reference_tools] %s\n' "$*" >&2; }

# A `convert` on PATH may be a stand-in or GraphicsMagick: the tests look for ImageMagick by its version line.
imagemagick_present() {
    local command
    for command in magick convert-im6.q16 convert; do
        command -v "$command" >/dev/null || continue
        "$command" -version 2>/dev/null | head -1 | grep -q '^Version: ImageMagick' && return 0
    done
    return 1
}

if imagemagick_present; then
    log "ImageMagick is installed"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { log "ERROR: installing ImageMagick needs root (sudo $0)"; exit 1; }
command -v apt-get >/dev/null || { log "ERROR: apt-get not found; install ImageMagick by hand"; exit 1; }
log "apt-get install imagemagick"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq imagemagick >/dev/null
imagemagick_present || { log "ERROR: ImageMagick is still missing after apt-get install"; exit 1; }
