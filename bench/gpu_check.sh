#!/usr/bin/env bash
# Everything that needs a GPU, in one go (about 10 minutes on an H100/H200):
#   1. the suite's CUDA-marked tests (bf16 steps, precision auto, a GPU checkpoint on the CPU)
#      and the decode tests, on the machine's own PyTorch;
#   2. bench/vs_trl.py on the GPU, bf16 then fp32 (goal: 2x TRL's tokens/s there too);
#   3. bench/decode_bandwidth.py: the decode step's share of the HBM bandwidth bound (and the
#      lean steps against the model's forward, with and without LoRA);
#   4. bench/vs_trl_ppo.py on the GPU, fp32 (TRL 1.12's PPOTrainer, from its own wheel);
#   5. the memory estimate against torch.cuda.max_memory_allocated for GRPO and PPO of a
#      Qwen2.5-0.5B-shaped random model (bench/estimate_memory.py --device cuda).
# Results land in $OUT (the device tool brings them back): one log or JSON file per part.
#
# Here, before: `make gpu-carry` (TRL's wheels, tiny-llama, SmolLM2's config and tokenizer,
# the reference script; about 23 MB). Then, through the device tool:
#   run(command="bash bench/gpu_check.sh", carry=["var/gpu-carry"], timeout_s=600)
# A GPU machine reaches no registry and gets no ../shared, hence the carried folder. SmolLM2's
# weights (94 MB of GGUF) do not travel: the benchmark runs a model of SmolLM2-135M's exact
# shape with random weights (the same work per token; completions are forced to 64 tokens).
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=${CARRY:-var/gpu-carry}
OUT=${OUT:-var/gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT" var/models
export PYTHONUNBUFFERED=1
status=0

if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$CARRY"/wheels/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{ nvidia-smi -L 2>&1; "$PY" -c 'import torch, transformers, sys; print(sys.version);
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers",
      transformers.__version__)'; } | tee "$OUT/env.txt"

[ -e var/models/tiny-llama ] || cp -r "$CARRY/tiny-llama" var/models/tiny-llama
MODEL=var/models/smollm2-135m-instruct
if [ ! -e "$MODEL/model.safetensors" ]; then
  MODEL=var/models/smollm2-shape
  [ -e "$MODEL/model.safetensors" ] || "$PY" - "$CARRY/smollm2-config" "$MODEL" <<'EOF'
import shutil, sys
import torch
from transformers import AutoConfig, AutoModelForCausalLM
src, dest = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.float32)
model.save_pretrained(dest)
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
             "generation_config.json"):
    shutil.copy(f"{src}/{name}", f"{dest}/{name}")
print("built", dest, sum(p.numel() for p in model.parameters()), "parameters")
EOF
fi

echo "== 1. CUDA tests"
# no conftest: it needs Django, which is not on the GPU machine and not needed here
timeout 180 "$PY" -m pytest tests/test_training_cuda.py tests/test_training_decode.py \
  --noconftest -p no:cacheprovider -o addopts="" -q -rs 2>&1 | tee "$OUT/cuda_tests.log" \
  || status=1

echo "== 2. vs TRL on the GPU"
for precision in bf16 fp32; do
  timeout 200 "$PY" bench/vs_trl.py --device cuda --precision "$precision" --rounds 2 \
    --steps 5 --model "$MODEL" --trl-python "$PY" --baseline "$CARRY/trl_grpo_baseline.py" \
    > "$OUT/vs_trl_cuda_$precision.json" 2> "$OUT/vs_trl_cuda_$precision.err" || status=1
  cat "$OUT/vs_trl_cuda_$precision.json"
done

echo "== 3. decode against the HBM bound (H200: 4.8 TB/s; H100 SXM: 3.35)"
PEAK=$(nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100 && echo 3350 || echo 4800)
for rows in 8 64; do
  timeout 60 "$PY" bench/decode_bandwidth.py --device cuda --precision bf16 --model "$MODEL" \
    --rows "$rows" --peak-gbs "$PEAK" | tee -a "$OUT/decode_bandwidth.json" || status=1
done
# the lean steps against the model's own forward (and with LoRA adapters), 8 rows
for flags in "--model-forward" "--lora-rank 16" "--lora-rank 16 --model-forward"; do
  # shellcheck disable=SC2086  # the flags split into words on purpose
  timeout 60 "$PY" bench/decode_bandwidth.py --device cuda --precision bf16 --model "$MODEL" \
    --rows 8 --peak-gbs "$PEAK" $flags | tee -a "$OUT/decode_bandwidth.json" || status=1
done
echo "== 4. PPO vs TRL 1.12's PPOTrainer on the GPU"
if ls "$CARRY"/wheels-ppo/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site-ppo "$CARRY"/wheels-ppo/*.whl
  # TRL's side: the same interpreter with TRL 1.12 ahead of 1.16 on the path
  printf '#!/bin/sh\nPYTHONPATH=/tmp/site-ppo:${PYTHONPATH:-} exec %s "$@"\n' "$(command -v "$PY")" \
    > /tmp/trl-ppo-python && chmod +x /tmp/trl-ppo-python
  timeout 240 "$PY" bench/vs_trl_ppo.py --device cuda --precision fp32 --rounds 1 --steps 4 \
    --model "$MODEL" --trl-python /tmp/trl-ppo-python \
    > "$OUT/vs_trl_ppo_cuda.json" 2> "$OUT/vs_trl_ppo_cuda.err" || status=1
  cat "$OUT/vs_trl_ppo_cuda.json"
fi
echo "== 5. the memory estimate on the GPU: a Qwen2.5-0.5B-shaped random model"
QWEN=var/models/qwen2.5-0.5b-shape
[ -e "$QWEN/model.safetensors" ] || "$PY" - "$CARRY/smollm2-config" "$QWEN" <<'EOF2'
import shutil, sys
import torch
from transformers import AutoModelForCausalLM, Qwen2Config
src, dest = sys.argv[1], sys.argv[2]
config = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                     num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                     max_position_embeddings=32768, tie_word_embeddings=True)
torch.manual_seed(0)
AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(dest)
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    shutil.copy(f"{src}/{name}", f"{dest}/{name}")  # SmolLM2's: its ids fit the vocabulary
EOF2
timeout 300 "$PY" bench/estimate_memory.py --device cuda --model-dir "$QWEN" \
  | tee "$OUT/estimate_memory_cuda.log" || status=1
exit $status
