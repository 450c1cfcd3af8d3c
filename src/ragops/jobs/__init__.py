"""One entry point per bundle task. ``python_wheel_task`` calls them with ``--name=value`` named
parameters; ``ragops bundle run`` calls the very same functions locally."""
