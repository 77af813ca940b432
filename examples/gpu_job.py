"""A job on a rented GPU through novita-gpu's Python client: create an instance, wait until its ports
answer, keep it marked as used while working (so auto-stop leaves it alone), then stop it.

    pip install ./client          # the client alone: httpx is all it brings
    python examples/gpu_job.py --name my-job --steps 3

The service is found at NOVITA_GPU_URL (default http://127.0.0.1:3000), with NOVITA_GPU_API_KEY if set.
"""

from __future__ import annotations

import argparse
import os

import httpx

from novita_gpu_client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--product", default="RTX 4090 24GB")
    parser.add_argument("--template", default="pytorch-jupyter")
    parser.add_argument("--steps", type=int, default=3, help="units of work, each marking the instance used")
    parser.add_argument("--webhook-url", default=None)
    args = parser.parse_args()

    url = os.environ.get("NOVITA_GPU_URL", "http://127.0.0.1:3000")
    with Client(url, api_key=os.environ.get("NOVITA_GPU_API_KEY")) as client:
        created = client.create(
            args.name, args.product, args.template, auto_stop_minutes=30, webhook_url=args.webhook_url
        )
        instance_id = created["instanceId"]
        print(f"created {instance_id}, waiting until it is ready", flush=True)
        ready = client.wait_for(instance_id, "ready", timeout=900)
        endpoint = next(p["endpoint"] for p in ready["connectionDetails"]["ports"] if p["type"] == "http")
        print(f"ready: {endpoint}", flush=True)

        for step in range(1, args.steps + 1):
            answer = httpx.get(endpoint, timeout=10)  # the work: here, a call to the instance's app
            used = client.touch(instance_id)
            print(
                f"step {step}: the app answered {answer.status_code}; auto-stop moved to {used['autoStop']['stopsAt']}",
                flush=True,
            )

        client.stop(instance_id)
        stopped = client.wait_for(instance_id, "stopped", timeout=300)
        print(f"stopped ({stopped['statusReason']})", flush=True)


if __name__ == "__main__":
    main()
