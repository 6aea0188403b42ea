# ferry — the two commands: `make demo` and `make test`. See README.md.
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?=
LISTEN ?= 127.0.0.1:8080
DATA ?= ./ferry-data

.PHONY: all build deps test demo clean unit integration

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

deps:
	@tools/deps.sh

# deps, build, then every test through ctest (unit, unit under ASan+UBSan,
# integration, conformance, reference, fuzz).
test: deps build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 900

unit: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L unit

integration: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L integration

demo: deps build
	@tools/demo.sh "$(BUILD)/ferry" "$(LISTEN)" "$(DATA)" "$(MODEL)"

clean:
	rm -rf $(BUILD)
