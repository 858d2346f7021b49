# Sourced by the demo recipe scripts: the synthetic sets they train and test on, each made once.
# synth DIR PAIRS SEED VAL_FRAC TEST_FRAC  (160 × 120 scenes, like CLEVR-Change's layout)
synth() {
  [ -f "$1/splits.json" ] || clip4idc data synth "$1" --pairs "$2" --size 160x120 --seed "$3" --workers 2 \
    --val-frac "$4" --test-frac "$5"
}
