// fuse-layers: every layer into an nn.fusion_group with a core number, by a
// strategy or from a plan file; lower-to-accel follows the groups.
//
// RUN: dlfusion-opt %s -p 'fuse-layers{strategy=baseline}' | filecheck %s --check-prefix=BASE
// RUN: dlfusion-opt %s -p 'fuse-layers{strategy=cores-only}' | filecheck %s --check-prefix=CORES
// RUN: rm -f %t.cache.jsonl
// RUN: dlfusion-opt %s -p 'fuse-layers{strategy=dp cache="%t.cache.jsonl" save="%t.plan.json"}' -o %t.dp.mlir
// RUN: filecheck %s --check-prefix=DP --input-file=%t.dp.mlir
// RUN: filecheck %s --check-prefix=SAVED --input-file=%t.plan.json
// A saved plan applies without searching again, to the same IR:
// RUN: dlfusion-opt %s -p 'fuse-layers{plan="%t.plan.json"}' -o %t.replay.mlir
// RUN: diff %t.dp.mlir %t.replay.mlir
// dp in the program order's segments, and exhaustive, from the same cache:
// RUN: dlfusion-opt %s -p 'fuse-layers{strategy=dp space=order cache="%t.cache.jsonl"}' | filecheck %s --check-prefix=DP
// RUN: dlfusion-opt %s -p 'fuse-layers{strategy=exhaustive cache="%t.cache.jsonl" core-choices=1,4}' | filecheck %s --check-prefix=DP
// RUN: dlfusion-opt %s -p 'fuse-layers{plan="%S/Inputs/fuse-layers-plan.json"}' | filecheck %s --check-prefix=PLAN
// RUN: dlfusion-opt %s -p 'fuse-layers{plan="%S/Inputs/fuse-layers-plan.json"},lower-to-accel' | filecheck %s --check-prefix=ACCEL
// RUN: dlfusion-opt %s -p 'fuse-layers{strategy=baseline set-cores=false}' | filecheck %s --check-prefix=NOCORES
//
// Bad input: one line on stderr, exit 1.
// RUN: not dlfusion-opt %s -p 'fuse-layers{strategy=greedy}' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not dlfusion-opt %s -p 'fuse-layers{plan="%S/Inputs/fuse-layers-other-model.json"}' 2>&1 | filecheck %s --check-prefix=OTHER
// RUN: not dlfusion-opt %s -p 'fuse-layers{plan="%S/Inputs/fuse-layers-plan.json" target=edge8}' 2>&1 | filecheck %s --check-prefix=TARGET
// RUN: not dlfusion-opt %s -p 'fuse-layers{strategy=exhaustive max-configs=10}' 2>&1 | filecheck %s --check-prefix=GUARD
// RUN: not dlfusion-opt %s -p 'fuse-layers{strategy=baseline},fuse-layers{strategy=baseline}' 2>&1 | filecheck %s --check-prefix=TWICE
// RUN: not dlfusion-opt %s -p 'fuse-layers{strategy=dp core-choices=1,64}' 2>&1 | filecheck %s --check-prefix=CHOICES
//
// A corrupted tuning-record cache is reported, rebuilt, and the pass goes on:
// RUN: echo '{"version": 1, "key": "truncat' > %t.bad.jsonl
// RUN: dlfusion-opt %s -p 'fuse-layers{strategy=cores-only cache="%t.bad.jsonl"}' 2>&1 | filecheck %s --check-prefix=CORRUPT
// RUN: filecheck %s --check-prefix=REBUILT --input-file=%t.bad.jsonl

// A residual block with a projection shortcut (two parallel branches joined by an add).
func.func @main(%x: tensor<1x64x28x28xf32>) -> tensor<1x128x28x28xf32> attributes {nn.input_names = ["x"], nn.output_names = ["out"]} {
  %c1.w = nn.weight dense_resource<c1.w> : tensor<128x64x3x3xf32>
  %c1.b = nn.weight dense_resource<c1.b> : tensor<128xf32>
  %c1 = nn.conv2d %x, %c1.w, %c1.b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x64x28x28xf32>, tensor<128x64x3x3xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32>
  %r1 = nn.relu %c1 : (tensor<1x128x28x28xf32>) -> tensor<1x128x28x28xf32>
  %c2.w = nn.weight dense_resource<c2.w> : tensor<128x128x3x3xf32>
  %c2.b = nn.weight dense_resource<c2.b> : tensor<128xf32>
  %c2 = nn.conv2d %r1, %c2.w, %c2.b {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x128x28x28xf32>, tensor<128x128x3x3xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32>
  %short.w = nn.weight dense_resource<short.w> : tensor<128x64x1x1xf32>
  %short.b = nn.weight dense_resource<short.b> : tensor<128xf32>
  %short = nn.conv2d %x, %short.w, %short.b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x64x28x28xf32>, tensor<128x64x1x1xf32>, tensor<128xf32>) -> tensor<1x128x28x28xf32>
  %add = nn.add %c2, %short : (tensor<1x128x28x28xf32>, tensor<1x128x28x28xf32>) -> tensor<1x128x28x28xf32>
  %out = nn.relu %add : (tensor<1x128x28x28xf32>) -> tensor<1x128x28x28xf32>
  func.return %out : tensor<1x128x28x28xf32>
}

// baseline: every layer alone on one core, groups named in program order.
// BASE-LABEL: func.func @main
// BASE:         %c1 = nn.fusion_group "g0" cores 1 ins(%x, %c1.w, %c1.b)
// BASE:           nn.conv2d
// BASE-NEXT:      nn.yield
// BASE:         %r1 = nn.fusion_group "g1" cores 1 ins(%c1)
// BASE:         %c2 = nn.fusion_group "g2" cores 1 ins(%r1, %c2.w, %c2.b)
// BASE:         %short = nn.fusion_group "g3" cores 1 ins(%x, %short.w, %short.b)
// BASE:         %add = nn.fusion_group "g4" cores 1 ins(%c2, %short)
// BASE:         %out = nn.fusion_group "g5" cores 1 ins(%add)
// BASE:         func.return %out

// cores-only: still one layer per group, each on its measured best core
// number among the target's core choices.
// CORES-LABEL: func.func @main
// CORES:         %c1 = nn.fusion_group "g0" cores {{[0-9]+}} ins(%x, %c1.w, %c1.b)
// CORES:         %r1 = nn.fusion_group "g1" cores {{[0-9]+}} ins(%c1)
// CORES:         %c2 = nn.fusion_group "g2" cores {{[0-9]+}} ins(%r1, %c2.w, %c2.b)
// CORES:         %short = nn.fusion_group "g3" cores {{[0-9]+}} ins(%x, %short.w, %short.b)
// CORES:         %add = nn.fusion_group "g4" cores {{[0-9]+}} ins(%c2, %short)
// CORES:         %out = nn.fusion_group "g5" cores {{[0-9]+}} ins(%add)

// dp (and exhaustive, and dp over segments on this block): groups of
// several layers, each with its measured best core number; the group with
// the add holds the join with both branches' tails, so it has several inputs.
// DP-LABEL: func.func @main
// DP:         %out = nn.fusion_group "g{{[0-9]+}}" cores {{[0-9]+}} ins({{.*}}%c2.w, %c2.b
// DP:           nn.conv2d
// DP:           nn.add
// DP-NEXT:      nn.relu
// DP-NEXT:      nn.yield
// DP-NEXT:    }
// DP-NEXT:    func.return %out

// SAVED:      "fingerprint": "30bb3144c1a0e4b0"
// SAVED:      "target": "mlu100",
// SAVED-NEXT: "strategy": "dp",
// SAVED-NEXT: "latency_us": {{[0-9.]+}},
// SAVED:      "space": "ideals",
// SAVED:      "measurements":
// SAVED:      "groups": [

// A hand-written plan: groups in its order, with its core numbers.
// PLAN-LABEL: func.func @main
// PLAN:         %r1 = nn.fusion_group "g0" cores 4 ins(%x, %c1.w, %c1.b)
// PLAN-NEXT:    ^bb0
// PLAN-NEXT:      nn.conv2d
// PLAN-NEXT:      nn.relu
// PLAN-NEXT:      nn.yield
// PLAN:         %short = nn.fusion_group "g1" cores 2 ins(%x, %short.w, %short.b)
// PLAN:         %out = nn.fusion_group "g2" cores 8 ins(%r1, %c2.w, %c2.b, %short)
// PLAN:         func.return %out

// ACCEL: accel.kernel "g0" cores 4 active {{[0-9]+}}
// ACCEL: accel.kernel "g1" cores 2 active {{[0-9]+}}
// ACCEL: accel.kernel "g2" cores 8 active {{[0-9]+}}

// NOCORES: nn.fusion_group "g0" ins(
// NOCORES-NOT: cores
// NOCORES: func.return

// UNKNOWN: dlfusion-opt: unknown strategy 'greedy'; choose one of baseline, cores-only, {{.*}}dp, exhaustive{{.*}}
// OTHER: dlfusion-opt: {{.*}}fuse-layers-other-model.json: the plan does not match the model: layer 0 is 'c1 nn.conv2d 1x128x28x28' in the model but 'c1 nn.conv2d 1x16x12x12' in the plan; plan this model again
// TARGET: dlfusion-opt: {{.*}}fuse-layers-plan.json: the plan was made for target 'mlu100', not 'edge8'; pass target=mlu100 or plan again for edge8
// GUARD: dlfusion-opt: exhaustive search space has at least 32 groupings of 6 layers (> guard max-configs=10); use strategy=dp or raise max-configs
// TWICE: dlfusion-opt: the module already has fusion groups; plan on a module without nn.fusion_group ops
// CHOICES: dlfusion-opt: core choice 64 is not within 1..32 (the cores of target 'mlu100')

// CORRUPT: dropped 1 corrupted tuning record(s); rewriting the cache from the good ones
// CORRUPT: nn.fusion_group "g0" cores
// REBUILT-NOT: truncat
// REBUILT: "cores": 1, {{.*}}"layers": ["conv2d"]
