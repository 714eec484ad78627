from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "webapp.runs"
    label = "runs"

    def ready(self) -> None:
        # Reward functions operators installed (entry points in rlhf_workbench.rewards): the
        # web process offers them and the workers (which set Django up too) score with them.
        from training.reward_plugins import discover

        discover()
