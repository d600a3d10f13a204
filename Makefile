# ntg-edge: `make demo` sets up and runs the whole pipeline on the embedded captures; `make test` runs the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
NTG     := $(BIN)/ntg-edge
OUT     ?= out
NDPI    ?= ../shared/data/ndpi
EPOCHS  ?= 120

.PHONY: setup demo test bench export-int8 clean

$(BIN)/ntg-edge: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[train,dev]'
	touch $@

setup: $(BIN)/ntg-edge

# The embedded default: captures this project recorded itself (data/README.md), labelled by folder = service.
demo: setup
	$(NTG) ingest data/captures --label-from folder --out $(OUT)/demo/flows.parquet
	$(NTG) split $(OUT)/demo/flows.parquet --cap-per-file 500 --out $(OUT)/demo
	$(NTG) train $(OUT)/demo/train.parquet --model llama --epochs 45 --out $(OUT)/demo/run
	$(NTG) generate $(OUT)/demo/run --counts-from $(OUT)/demo/train.parquet --out $(OUT)/demo/synthetic.parquet
	$(NTG) evaluate --real-test $(OUT)/demo/test.parquet --synthetic $(OUT)/demo/synthetic.parquet \
		--real-train $(OUT)/demo/train.parquet --json $(OUT)/demo/report.json

test: setup
	$(BIN)/pytest -q

# The benchmark split of the nDPI corpus (README "Benchmark"): fidelity with the real-vs-real floor, copy rate
# beside the natural rate, TSTR/TRTR; synthetic figures are mean ± sd over the DRAWS generation seeds. The recipe:
# the split's other flows learnt beside its classes, twice the default validation draw, a 120-epoch schedule with the
# patience to reach its end (docs/benchmarks.md).
DRAWS   ?= 0 1 2
SCALE   ?= 10
bench: setup
	$(NTG) ingest $(NDPI)/pcaps --labels $(NDPI)/labels.csv.gz --out $(OUT)/ndpi/flows.parquet
	$(NTG) split $(OUT)/ndpi/flows.parquet --out $(OUT)/ndpi
	$(NTG) train $(OUT)/ndpi/train.parquet --model llama --epochs $(EPOCHS) --other-flows $(OUT)/ndpi/other.parquet \
		--val-flows-per-class 120 --patience 40 --out $(OUT)/ndpi/run
	for s in $(DRAWS); do $(NTG) generate $(OUT)/ndpi/run --counts-from $(OUT)/ndpi/train.parquet --seed $$s \
		--out $(OUT)/ndpi/synthetic-$$s.parquet || exit 1; done
	$(NTG) evaluate --real-test $(OUT)/ndpi/test.parquet \
		$(foreach s,$(DRAWS),--synthetic $(OUT)/ndpi/synthetic-$(s).parquet) \
		--real-train $(OUT)/ndpi/train.parquet --json $(OUT)/ndpi/report.json
	@echo "-- the same with $(SCALE)x as many synthetic flows (synthetic data is cheap: what augmentation would use)"
	for s in $(DRAWS); do $(NTG) generate $(OUT)/ndpi/run --counts-from $(OUT)/ndpi/train.parquet --scale $(SCALE) \
		--seed $$s --out $(OUT)/ndpi/synthetic$(SCALE)x-$$s.parquet || exit 1; done
	$(NTG) evaluate --real-test $(OUT)/ndpi/test.parquet \
		$(foreach s,$(DRAWS),--synthetic $(OUT)/ndpi/synthetic$(SCALE)x-$(s).parquet) \
		--real-train $(OUT)/ndpi/train.parquet --json $(OUT)/ndpi/report$(SCALE)x.json
	$(NTG) bench ingest $(NDPI)/pcaps --json $(OUT)/ndpi/ingest.json
	$(NTG) bench speed $(OUT)/ndpi/run --json $(OUT)/ndpi/speed.json

# An int8 ONNX bundle of a trained run: what `ntg-edge generate BUNDLE ...` runs at the edge without torch.
RUN     ?= $(OUT)/demo/run
BUNDLE  ?= $(OUT)/demo/bundle-int8
export-int8: setup
	$(NTG) export $(RUN) --format onnx --int8 --out $(BUNDLE)

clean:
	rm -rf $(OUT)
