#!/usr/bin/env bash
# Runs inside xvfb-run (tests/data_gen/test_teleop.py): start teleop, find its window, drive it with
# synthetic mouse and keys through xdotool (record, sweep the mouse, save, quit), wait for it to exit.
set -u
out="$1"; y="$2"; shift 2; xs=("$@")
python -m data_gen.teleop --out "$out" --scale 1 &
pid=$!
wid=""
for _ in $(seq 240); do  # up to 2 min for the env and the window, unless teleop dies first
  kill -0 $pid 2>/dev/null || break
  wid=$(xdotool search --pid $pid 2>/dev/null | head -1)
  [ -n "$wid" ] && break
  sleep 0.5
done
if [ -z "$wid" ]; then echo "no teleop window" >&2; kill $pid 2>/dev/null; wait $pid; exit 3; fi
xdotool windowfocus "$wid"
xdotool mousemove --window "$wid" "${xs[0]}" "$y"; sleep 1
xdotool key space; sleep 0.5
for x in "${xs[@]}"; do xdotool mousemove --window "$wid" "$x" "$y"; sleep 0.2; done
sleep 1
xdotool key s; sleep 1.5
xdotool key q
wait $pid
