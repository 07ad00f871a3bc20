"""Two models or versions on one video: the plan, the job, the side-by-side view, map agreement and
the summary."""
