"""Can a second core speed up one explicit step of a small grid on this machine?

An explicit step of the 100 x 100 valley takes tens of microseconds and its fields (80 kB each
in float64) live in one core's second-level cache. Splitting the step over two cores pays (a)
the hand-over of the work to the other core and (b) the fields' trip between the two cores'
caches every step, since the step's output is the next step's input. This script measures both
with a small C++ program built by the machine's compiler (as the native kernels are), with
the best possible hand-over: a helper thread that spins (never sleeps) waiting for work, so
that no wake-up is paid (XLA's intra-op pool sleeps and pays it).

For each amount of work per step (``--work``: passes of a vectorised polynomial over the
field, from about the cost of the limiter kernel to several face kernels), a loop of steps
in which each step updates a 10^4-cell field from the one before:

- ``serial``: one core does the whole step;
- ``split``: the calling core does half of the cells, the spinning helper the other half;
  then the calling core finishes the step over the whole field (as the next kernel of a step
  would), so half of the field crosses between the cores each way every step;
- ``split, no data``: the same hand-over with each core working on a field of its own that
  never crosses (the best a split could do).

Prints a table and writes JSON (``--out``) with the CPU model. Not a test: timings depend on
the machine.

    python scripts/benchmark_cores.py [--cells 10000] [--work 1,4,16,64] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = r"""
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
static std::atomic<long> go{0}, done{0};
static std::vector<double> H, Q, H2, Q2;
static int N, R;
static void comp(std::vector<double>& h, std::vector<double>& q, int lo, int hi) {
  for (int r = 0; r < R; ++r)
    for (int i = lo; i < hi; ++i) {
      double x = h[i];
      q[i] = ((x * 1.0001 + 0.3) * x + 0.2) * x * 0.5 + q[i] * 0.999;
    }
}
static void update(std::vector<double>& h, const std::vector<double>& q) {
  for (int i = 0; i < N; ++i) h[i] = h[i] * 0.9999 + 1e-9 * q[i];
}
int main(int argc, char** argv) {
  N = std::atoi(argv[1]);
  R = std::atoi(argv[2]);
  const int steps = std::atoi(argv[3]);
  H.assign(N, 0.5); Q.assign(N, 0.0); H2.assign(N, 0.5); Q2.assign(N, 0.0);
  bool own = false;  // the helper's half on its own field (no data crossing)
  std::thread helper([&] {
    long seen = 0;
    for (;;) {
      long g;
      while ((g = go.load(std::memory_order_acquire)) == seen) __builtin_ia32_pause();
      if (g < 0) return;
      seen = g;
      if (own) comp(H2, Q2, N / 2, N); else comp(H, Q, N / 2, N);
      if (own) update(H2, Q2);
      done.store(g, std::memory_order_release);
    }
  });
  using clock = std::chrono::steady_clock;
  auto per_step = [&](auto body) {
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      auto t0 = clock::now();
      for (int k = 0; k < steps; ++k) body();
      best = std::min(best, std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    }
    return best / steps;
  };
  long gen = 0;
  double serial = per_step([&] { comp(H, Q, 0, N); update(H, Q); });
  double split = per_step([&] {
    go.store(++gen, std::memory_order_release);
    comp(H, Q, 0, N / 2);
    while (done.load(std::memory_order_acquire) != gen) __builtin_ia32_pause();
    update(H, Q);
  });
  own = true;
  double alone = per_step([&] {
    go.store(++gen, std::memory_order_release);
    comp(H, Q, 0, N / 2);
    update(H, Q);
    while (done.load(std::memory_order_acquire) != gen) __builtin_ia32_pause();
  });
  go.store(-1);
  helper.join();
  std::printf("%.4f %.4f %.4f\n", serial, split, alone);
  return 0;
}
"""


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=10_000)
    ap.add_argument("--work", default="1,4,16,64", help="polynomial passes per step")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default="benchmark_cores.json")
    args = ap.parse_args(argv)
    cxx = next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    if cxx is None:
        print("no C++ compiler found", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "cores.cc", Path(tmp) / "cores"
        src.write_text(SOURCE)
        subprocess.run([cxx, "-O3", "-march=native", "-pthread", str(src), "-o", str(exe)],
                       check=True)
        print(f"{'work':>5} {'serial us':>10} {'split us':>9} {'speed-up':>9} "
              f"{'no data us':>11} {'speed-up':>9}")
        for work in (int(w) for w in args.work.split(",")):
            out = subprocess.run([str(exe), str(args.cells), str(work), str(args.steps)],
                                 capture_output=True, text=True, check=True).stdout.split()
            serial, split, alone = (float(v) for v in out)
            rows.append(dict(work=work, cells=args.cells, serial_us=serial, split_us=split,
                             split_no_data_us=alone, speedup=serial / split,
                             speedup_no_data=serial / alone))
            print(f"{work:5d} {serial:10.2f} {split:9.2f} {serial / split:8.2f}x "
                  f"{alone:11.2f} {serial / alone:8.2f}x", flush=True)
    report = dict(cpu=cpu_model(), cores=len(os.sched_getaffinity(0)),
                  compiler=cxx, rows=rows)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nCPU: {report['cpu']} ({report['cores']} cores); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
