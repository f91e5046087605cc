#!/bin/bash
# A screenshot of a real Blender window, run inside the Debian root by
# blender_driver.screenshot():
#   blender_screenshot.sh OUT.png WIDTHxHEIGHT WAIT_S READY_TIMEOUT_S BLENDER ARGV...
# Starts Xvfb on a free display, runs Blender there until the ready file
# ("$out.ready") appears, clicks RW_CLICKS, waits, and takes the picture.
# Exit status 90: Xvfb did not start; 91: Blender had exited (the picture is
# probably black).
set -u
out="$1"; size="$2"; wait_s="$3"; ready_timeout="$4"; shift 4
Xvfb -displayfd 3 -screen 0 "${size}x24" -nolisten tcp -noreset 3>/tmp/rw-display 2>/tmp/rw-xvfb.log &
xvfb=$!
for i in $(seq 200); do [ -s /tmp/rw-display ] && break; sleep 0.05; done
if [ ! -s /tmp/rw-display ]; then echo "Xvfb did not start" >&2; cat /tmp/rw-xvfb.log >&2; kill $xvfb; exit 90; fi
export DISPLAY=":$(cat /tmp/rw-display)"
echo "display $DISPLAY" >&2
"$@" > "$out.blender.log" 2>&1 &
blender=$!
t=0
while [ ! -e "$out.ready" ]; do
  if ! kill -0 $blender 2>/dev/null; then echo "Blender exited early" >&2; break; fi
  if [ $(( t )) -ge $(( ready_timeout * 10 )) ]; then echo "no ready signal; taking the picture anyway" >&2; break; fi
  sleep 0.1; t=$(( t + 1 ))
done
# Clicks, e.g. on a sidebar tab that no script can select: "x,y x,y ..."
for xy in ${RW_CLICKS:-}; do
  sleep 1; xdotool mousemove --sync "${xy%,*}" "${xy#*,}" click 1
done
sleep "$wait_s"
# A script that took the picture itself (at a moment it chose) has written "$out": keep it.
rc=0
[ -s "$out" ] || { import -display "$DISPLAY" -window root "$out"; rc=$?; }
if ! kill -0 $blender 2>/dev/null; then echo "Blender is not running (see the Blender log)" >&2; rc=91; fi
kill $blender 2>/dev/null; sleep 1; kill -9 $blender 2>/dev/null
kill $xvfb 2>/dev/null; wait 2>/dev/null
exit $rc
