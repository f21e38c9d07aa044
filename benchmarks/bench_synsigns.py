"""Goal: 10,000 synsigns images at 32 px generate in under 10 s on one CPU core."""
import time

import torch
from common import save

from lib.data.synsigns import generate

GOAL_S = 10.0


def main(n: int = 10_000, size: int = 32, repeats: int = 3) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    generate(256, size, seed=99)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        generate(n, size, seed=r)
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(threads)
    best = min(times)
    res = {"images": n, "size": size, "threads": 1, "seconds_best": round(best, 3),
           "seconds_all": [round(t, 3) for t in times], "images_per_s": round(n / best),
           "goal_seconds": GOAL_S, "meets_goal": best < GOAL_S}
    save("synsigns_generation", res)
    return res


if __name__ == "__main__":
    main()
