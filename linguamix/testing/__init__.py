"""Reusable test doubles for code built on linguamix, in the manner of seqio's test_utils:
real servers on loopback, not mocks, so the real clients (huggingface_hub, the OpenAI
chat client, sbatch) are what a test exercises.

* `hub_server.FakeHub`: the Hugging Face Hub's HTTP API for `huggingface_hub`.
* `augment_endpoint.FakeChatEndpoint`: an OpenAI-compatible chat endpoint that translates
  the augmentation prompts.
* `judge_endpoint.RecordingJudge`: an OpenAI-compatible judge for MT-Bench-X.
* `slurm_cluster.start`: a real one-node SLURM cluster (slurmctld, slurmd, munged).
* `fixtures`: pytest fixtures over them (a pytest plugin).

Nothing here is imported by the library.
"""
