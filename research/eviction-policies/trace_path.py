"""Where the Mooncake trace is: $TRACE, else ../shared/traces next to the repository."""
import os

TRACE = os.environ.get(
    "TRACE",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/traces/mooncake_synthetic_trace.jsonl"),
)
