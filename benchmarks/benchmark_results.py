"""What the benchmark scripts share: saving a run's settings and results as JSON."""
import json


def save_results(path, args, **results):
    """Write the command line's settings (less the internal --worker argument) and the results."""
    settings = {key: value for key, value in vars(args).items() if key != "worker"}
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"settings": settings, **results}, out, indent=2)
    print(f"saved {path}")
