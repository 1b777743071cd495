#!/bin/bash
# Captures sysfs fixture trees from real boots (Debian's kernel under QEMU) for the
# fast unit tests: tests/fixtures/qemu-{intel,amd,noiommu}-{before,after}/.
# "before" = at dracut's pre-udev, before the agent and before udev's coldplug (with
# rd.driver.pre=e1000e, so one host driver is already bound); "after" = once coldplug
# settled, after the agent bound the main config (configs/main.toml).
# Usage: tests/qemu/capture.sh [intel|amd|none]...   (default: all three)
set -uo pipefail
QEMU_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/qemu/lib.sh
. "$QEMU_DIR/lib.sh"

# extract_capture LOG STAGE DEST: the base64 tar printed between the markers.
extract_capture() {
    local logf=$1 stage=$2 dest=$3
    rm -rf "$dest"
    mkdir -p "$dest"
    tr -d '\r' <"$logf" |
        awk -v s="$stage" '$0 == "VE-CAPTURE-END " s { on = 0 } on { print } $0 == "VE-CAPTURE-BEGIN " s { on = 1 }' |
        base64 -d | tar -xzf - -C "$dest"
}

[[ -n ${VE_SKIP_DEPS:-} ]] || "$QEMU_DIR/deps.sh" || die "deps.sh failed"
fetch_kernel
build_agent
export VE_QEMU_DIR=$QEMU_DIR
mkdir -p "$WORK_DIR/empty-confdir"
dracut_image "$WORK_DIR/dracut-shell.img" shell "$QEMU_DIR/configs/main.toml" || die "dracut image"
status=0
for iommu in "${@:-intel amd none}"; do
    for v in $iommu; do
        name=$v
        [[ $v == none ]] && name=noiommu
        qemu_boot "capture-$name" "$v" "$WORK_DIR/dracut-shell.img" \
            "root=/dev/nonexistent rd.retry=6 rd.shell=0 rd.emergency=poweroff rd.driver.pre=e1000e ve.config=main ve.capture=1 loglevel=1"
        for stage in before after; do
            dest=$REPO_DIR/tests/fixtures/qemu-$name-$stage
            if extract_capture "$WORK_DIR/capture-$name.log" "$stage" "$dest"; then
                log "captured $dest ($(du -sh "$dest" | cut -f1))"
            else
                log "capture $name $stage failed"
                status=1
            fi
        done
    done
done
exit "$status"
