#!/usr/bin/env bash
# SoftHSM2 for this checkout: the PKCS#11 token that holds intake's key-encryption
# keys when ENLACE_KEK_PROVIDER=pkcs11 (services/intake/kek_pkcs11.py). Locally the
# stand-in for the HSM of production: the keys are made on the token and never leave it.
#
# State: .local/softhsm/softhsm2.conf and the token files in .local/softhsm/tokens/
# (directories 0700, files 0600). One token, labelled enlace-intake; its PINs are
# generated at first start into .local/secrets/softhsm/{so-pin,user-pin} (0600).
# `rm -rf .local/softhsm` drops the token and every key on it (and so every case
# sealed under them); the next `init` makes an empty one.
#
# Usage: deploy/local/softhsm.sh {install|init|env|status}
#   install  the Debian package softhsm2, if its module or softhsm2-util is missing
#   init     install, write the configuration, initialise the token if there is none
#            (idempotent; quick when all is done: infra.sh up runs it every time)
#   env      print the settings a service (or a shell, with eval) needs to reach the token
#   status   say whether the token is there (exit 3 when not)
set -euo pipefail

# shellcheck source=deploy/local/env.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/env.sh"

usage() { echo "usage: $0 {install|init|env|status}" >&2; exit 2; }

SOFTHSM_DIR="$LOCAL_DIR/softhsm"
SOFTHSM_CONF="$SOFTHSM_DIR/softhsm2.conf"
SOFTHSM_TOKENS="$SOFTHSM_DIR/tokens"
# Debian's path of the module (a link to the multiarch one).
SOFTHSM_MODULE="${ENLACE_KEK_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
SOFTHSM_TOKEN_LABEL=enlace-intake
SO_PIN_SECRET=softhsm/so-pin
USER_PIN_SECRET=softhsm/user-pin

installed() { [[ -e "$SOFTHSM_MODULE" ]] && command -v softhsm2-util >/dev/null 2>&1; }

do_install() {
    installed && return 0
    apt_install softhsm2
    installed || die "softhsm2 installed but $SOFTHSM_MODULE or softhsm2-util is still missing"
}

write_conf() {
    local want tmp
    want="# Written by deploy/local/softhsm.sh; rewritten by every init.
directories.tokendir = $SOFTHSM_TOKENS
objectstore.backend = file
log.level = ERROR
slots.removable = false"
    mkdir -p "$SOFTHSM_TOKENS"
    chmod 700 "$SOFTHSM_DIR" "$SOFTHSM_TOKENS"
    if [[ -f "$SOFTHSM_CONF" && "$(cat -- "$SOFTHSM_CONF")" == "$want" ]]; then
        return 0
    fi
    tmp="$(mktemp "$SOFTHSM_CONF.XXXXXX")"
    chmod 600 "$tmp"
    printf '%s\n' "$want" >"$tmp"
    mv -f -- "$tmp" "$SOFTHSM_CONF"
}

hsm_util() { SOFTHSM2_CONF="$SOFTHSM_CONF" softhsm2-util "$@"; }

token_exists() {
    hsm_util --show-slots 2>/dev/null | grep -Eq "^[[:space:]]*Label:[[:space:]]*$SOFTHSM_TOKEN_LABEL[[:space:]]*\$"
}

do_init() {
    do_install
    # Two `infra.sh up` may run at once (parallel test sessions): one init at a time.
    with_lock softhsm
    umask 077
    write_conf
    if token_exists; then
        # A token without its PIN file cannot be opened: say so rather than invent a
        # new PIN the token does not know.
        [[ -s "$SECRETS_DIR/$USER_PIN_SECRET" ]] \
            || die "token $SOFTHSM_TOKEN_LABEL exists but $SECRETS_DIR/$USER_PIN_SECRET is gone; its keys are unreachable: rm -rf $SOFTHSM_DIR and run init again (cases sealed under them are lost)"
        return 0
    fi
    local so_pin user_pin out="$RUN_DIR/softhsm-init.log"
    so_pin="$(ensure_secret "$SO_PIN_SECRET")"
    user_pin="$(ensure_secret "$USER_PIN_SECRET")"
    info "initialising SoftHSM2 token $SOFTHSM_TOKEN_LABEL in $SOFTHSM_TOKENS"
    # softhsm2-util takes PINs only as arguments or from a terminal (CI has none):
    # they are visible in the process list for this one short command, on this machine.
    hsm_util --init-token --free --label "$SOFTHSM_TOKEN_LABEL" \
        --so-pin "$so_pin" --pin "$user_pin" >"$out" 2>&1 \
        || die "softhsm2-util --init-token failed" "$out"
    token_exists || die "token $SOFTHSM_TOKEN_LABEL not found after initialising it" "$out"
    chmod -R go-rwx "$SOFTHSM_TOKENS"
}

do_env() {
    info "SOFTHSM2_CONF=$SOFTHSM_CONF"
    info "ENLACE_KEK_PKCS11_MODULE=$SOFTHSM_MODULE"
    info "ENLACE_KEK_PKCS11_TOKEN=$SOFTHSM_TOKEN_LABEL"
    info "ENLACE_KEK_PROVIDER=pkcs11 (the PIN: ENLACE_KEK_PKCS11_PIN, from $SECRETS_DIR/$USER_PIN_SECRET)"
}

do_status() {
    if installed && [[ -f "$SOFTHSM_CONF" ]] && token_exists; then
        info "softhsm: token $SOFTHSM_TOKEN_LABEL in $SOFTHSM_TOKENS (SOFTHSM2_CONF=$SOFTHSM_CONF)"
        return 0
    fi
    info "softhsm: no token $SOFTHSM_TOKEN_LABEL; run deploy/local/softhsm.sh init"
    return 3
}

case "${1:-}" in
    install) do_install ;;
    init) do_init ;;
    env) do_env ;;
    status) do_status ;;
    *) usage ;;
esac
