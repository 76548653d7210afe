#!/usr/bin/env bash
# Quiet-machine measurements, end of session 2026-12-02 (evening). Needs target/release/ringattn (--features mpi) and llama-cpp-python.
set -u
cd "$(dirname "$0")/../../.."  # the repository root
B=target/release/ringattn
OUT=benches/results/amd-2026-12-02-evening
mkdir -p $OUT
P=data/duo-patterns/SmolLM2-135M-Instruct
$B info > $OUT/info.txt 2>&1
cat /usr/share/common-licenses/{GPL-3,GFDL-1.3,LGPL-2.1,Apache-2.0} > /tmp/licenses.txt
head -c 34000 /tmp/licenses.txt > /tmp/p8k.txt
echo "== duo speed at 8K $(date +%T)"
for round in 1 2; do
  $B generate --prompt-file /tmp/p8k.txt --max-tokens 64 --ignore-eos -p 1 -t 2 --json $OUT/gen8k-full-r$round.json > /dev/null 2>>$OUT/err.log
  $B generate --prompt-file /tmp/p8k.txt --max-tokens 64 --ignore-eos -p 1 -t 2 --duo $P --sparsity 0.5 --json $OUT/gen8k-duo0.5-r$round.json > /dev/null 2>>$OUT/err.log
done
for s in 0.25 0.75; do
  $B generate --prompt-file /tmp/p8k.txt --max-tokens 64 --ignore-eos -p 1 -t 2 --duo $P --sparsity $s --json $OUT/gen8k-duo$s-r1.json > /dev/null 2>>$OUT/err.log
done
echo "== bench model 8K with llama.cpp $(date +%T)"
$B bench model --context 8192 --workers 1,2 --max-tokens 32 --llamacpp --no-plot --out $OUT/model-8k 2>>$OUT/err.log
echo "== done $(date +%T)"
