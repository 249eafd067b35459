#!/usr/bin/env bash
# Reproduce the experiments of Zhang, De Sa, Mitliagkas, Re (2016), "Parallel SGD: When does
# averaging help?" (PAPER.md): one sweep per experiment in configs/paper/, then its figures
# and report.
#
#   scripts/reproduce_paper.sh                 # sizes for a 2-core machine: a few minutes
#   scripts/reproduce_paper.sh --full          # configs/paper/full/: bigger, for a cluster node
#   scripts/reproduce_paper.sh --out DIR       # results root (default results/paper,
#                                              # with --full results/paper-full)
#   scripts/reproduce_paper.sh --configs DIR   # other sweep files of the same names (tests)
#
# Writes DIR/<sweep>/ (runs, index.csv, report.md, report.csv) and DIR/figures/*.png.
# Sweeps are resumable: running the script again skips the runs already completed.
# PARSGD (default: parsgd on the PATH, else python3 -m parsgd) names the command to run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
configs=""
out=""
full=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --full) full=1; shift ;;
        --out) out="$2"; shift 2 ;;
        --out=*) out="${1#--out=}"; shift ;;
        --configs) configs="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "reproduce_paper.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [[ $full -eq 1 ]]; then
    configs="${configs:-$here/configs/paper/full}"
    out="${out:-results/paper-full}"
else
    configs="${configs:-$here/configs/paper}"
    out="${out:-results/paper}"
fi

if [[ -n "${PARSGD:-}" ]]; then
    read -r -a parsgd <<<"$PARSGD"
elif command -v parsgd >/dev/null 2>&1; then
    parsgd=(parsgd)
else
    parsgd=(python3 -m parsgd)
fi

figures="$out/figures"
mkdir -p "$figures"
start=$SECONDS
# The small sizes use the serial backend (M workers in one process, the same numbers as M
# processes): one core per run, so run as many as there are cores. The full sizes use M
# processes per run, and parsgd sweep then runs cores / M at once by itself.
jobs=(--jobs "$(nproc)")
if [[ $full -eq 1 ]]; then
    jobs=()
fi

step() { echo; echo "== $* ($((SECONDS - start)) s) =="; }
sweep() { "${parsgd[@]}" sweep "$configs/$1" --out "$out" "${@:2}"; }
plot() { "${parsgd[@]}" plot "$@"; }
report() { "${parsgd[@]}" report "$@" >/dev/null; echo "wrote $1/report.md"; }

step "1. quadratic: the variance envelope"
sweep 1-quadratic-envelope.yaml "${jobs[@]}"
q="$out/quadratic-envelope"
plot "$q"/beta0.0_every* -o "$figures/1-quadratic-beta0.png" --y dist_opt_sq --theory --log \
    --by averaging.every --title "Quadratic, beta = 0 (additive noise): every H gives the same average"
plot "$q"/beta1.5_every* -o "$figures/1-quadratic-beta1.5.png" --y dist_opt_sq --theory --log \
    --by averaging.every --title "Quadratic, beta = 1.5 (growing envelope): ordered by H"
report "$q" --by objective.beta,averaging.every

step "2. least squares with Gaussian features"
sweep 2-least-squares.yaml "${jobs[@]}"
lsq="$out/least-squares"
plot "$lsq"/noise0.5_every* -o "$figures/2-least-squares-noisy.png" --y dist_opt_sq --theory \
    --log --by averaging.every --title "Least squares, Gaussian features, noise s = 0.5"
plot "$lsq"/noise0.0_every* -o "$figures/2-least-squares-noiseless.png" --y dist_opt_sq \
    --theory --log --by averaging.every --title "Least squares, Gaussian features, noiseless"
report "$lsq" --by data.noise,averaging.every

step "3. logistic regression on breast_cancer"
sweep 3-logistic-real.yaml
lr="$out/logistic-real"
plot "$lr" -o "$figures/3-logistic-samples.png" --y subopt --x samples --log \
    --by averaging.every --title "Logistic regression, breast_cancer: against samples"
plot "$lr" -o "$figures/3-logistic-time-to-target.png" --kind wallclock --y subopt --target 0.005 \
    --by averaging.every --title "Logistic regression, breast_cancer, worker processes: wall-clock time to subopt 0.005"
report "$lr" --by averaging.every --target 0.0565  # f* = 0.0515: subopt 0.005

step "4. PCA: shared against independent starts"
sweep 4-pca.yaml "${jobs[@]}"
pca="$out/pca"
plot "$pca" -o "$figures/4-pca.png" --y subopt --log --by sgd.init,averaging.every \
    --title "PCA (rank-one factorisation): one-shot against every 10 steps"
report "$pca" --by sgd.init,averaging.every

step "5. MLP on digits"
sweep 5-mlp-digits.yaml "${jobs[@]}"
mlp="$out/mlp-digits"
plot "$mlp" -o "$figures/5-mlp-accuracy.png" --y test_accuracy --by sgd.init,averaging.every \
    --title "MLP on digits: test accuracy of the averaged model"
plot "$mlp" -o "$figures/5-mlp-loss.png" --y loss --log --by sgd.init,averaging.every \
    --title "MLP on digits: training loss of the averaged model"
report "$mlp" --by sgd.init,averaging.every

step "6. softmax regression on digits: H from every step to one-shot"
sweep 6-softmax-digits.yaml "${jobs[@]}"
sm="$out/softmax-digits"
plot "$sm" -o "$figures/6-softmax-accuracy.png" --y test_accuracy --by averaging.every \
    --ylim 0.8,1 --title "Softmax regression on digits: test accuracy of the averaged model"
# The same runs' wall-clock time projected onto two clusters of 4 nodes (measured compute
# plus syncs x a ring all-reduce): Ethernet-like and InfiniBand-like links.
for net in "latency_us=50,bandwidth_gbps=10,nodes=4:ethernet" "latency_us=2,bandwidth_gbps=100,nodes=4:infiniband"; do
    plot "$sm" -o "$figures/6-softmax-network-${net##*:}.png" --kind wallclock \
        --target 'test_accuracy>=0.95' --network "${net%:*}" --log-time \
        --title "Softmax on digits, 4 nodes x 1 worker"
done
report "$sm" --by averaging.every --target 'test_accuracy>=0.95'

step "7. hierarchical averaging: in-node every step, global rarely, against flat"
sweep 7-hierarchical.yaml "${jobs[@]}"
hi="$out/hierarchical"
plot "$hi" -o "$figures/7-hierarchical.png" --y dist_opt_sq --log \
    --by averaging.every,averaging.global_every \
    --title "Quadratic, beta = 1.5, 2 nodes x 2 workers: hierarchical against flat averaging"
report "$hi" --by averaging.every,averaging.global_every

step "8. heterogeneous quadratic: workers with different optima and curvatures"
sweep 8-hetero-quadratic.yaml "${jobs[@]}"
hq="$out/hetero-quadratic"
plot "$hq" -o "$figures/8-hetero-quadratic.png" --kind final --y dist_opt_sq --theory --log \
    --by objective.curvature_spread --title "Heterogeneous quadratic: final distance to the global optimum against H"
report "$hq" --by objective.curvature_spread,averaging.every

step "9. softmax on digits with data that differ across workers: shared, shards, Dirichlet"
sweep 9-hetero-digits.yaml "${jobs[@]}"
het="$out/hetero-digits"
plot "$het" -o "$figures/9-hetero-digits.png" --kind final --x averaging.every --y subopt \
    --by data.partition --log --logx \
    --title "Softmax on digits, 4 workers: final f - f* against H, by how the rows are split"
report "$het" --by data.partition,averaging.every

echo
echo "done in $((SECONDS - start)) s: figures in $figures, reports in $out/*/report.md"
