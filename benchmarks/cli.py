"""`key=value` arguments of the small benchmarks (planner_sweep.py uses the project's config loader instead)."""


def parse(argv: list[str], defaults: dict[str, str], accepted: str) -> dict[str, str]:
    """Arguments over `defaults`; a malformed or unknown one exits with a one-line error naming the accepted ones."""
    args = dict(defaults)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in args:
            raise SystemExit(f"error: bad argument {arg!r}; accepted: {accepted}")
        args[key] = value
    return args


def env_names(value: str) -> list[str]:
    import envs  # here, so that benchmarks without environments (planner_speed) run without the simulators
    names = value.split(",")
    unknown = [n for n in names if n not in envs.ENVS]
    if unknown:
        raise SystemExit(f"error: unknown env(s) {', '.join(unknown)}; choose from: {', '.join(envs.ENVS)}")
    return names
