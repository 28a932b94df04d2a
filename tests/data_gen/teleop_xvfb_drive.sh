#!/usr/bin/env bash
# Runs inside xvfb-run (tests/data_gen/test_teleop.py): start teleop, find its window, drive it with
# synthetic mouse and keys through xdotool (record, sweep the mouse, save, quit), wait for it to exit.
# Every wait is bounded; the test also kills this whole process group if it overruns.
set -u
out="$1"; y="$2"; shift 2; xs=("$@")
python -m data_gen.teleop --out "$out" --scale 1 &
pid=$!

give_up() { echo "$1" >&2; kill $pid 2>/dev/null; wait $pid; exit 3; }

saved_episodes() {  # episodes committed to the store so far (readers take no lock)
  python -c "import sys; from data_gen.episode_store import EpisodeStore
with EpisodeStore.open(sys.argv[1]) as s: print(s.n_episodes)" "$out" 2>/dev/null || echo 0
}

wid=""
for _ in $(seq 120); do  # up to ~2 min for the env and the window, unless teleop dies first
  kill -0 $pid 2>/dev/null || break
  wid=$(timeout 1 xdotool search --sync --onlyvisible --pid $pid 2>/dev/null | head -1)
  [ -n "$wid" ] && break
done
[ -n "$wid" ] || give_up "no teleop window"
timeout 5 xdotool windowfocus --sync "$wid"
xdotool mousemove --window "$wid" "${xs[0]}" "$y"; sleep 1
# Recording starts on the tick that reads SPACE; the first move must reach a later tick, hence the pause.
xdotool key space; sleep 1.5
for x in "${xs[@]}"; do xdotool mousemove --window "$wid" "$x" "$y"; sleep 0.2; done
sleep 1
xdotool key s
# Q read in the same tick as S would drop the episode: quit only once the save is committed.
for _ in $(seq 60); do [ "$(saved_episodes)" -ge 1 ] && break; sleep 0.5; done
[ "$(saved_episodes)" -ge 1 ] || give_up "the episode was not saved"
xdotool key q
for _ in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done
kill -0 $pid 2>/dev/null && give_up "teleop did not quit on Q"
wait $pid
