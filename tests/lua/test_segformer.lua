-- test_segformer.lua: SegFormer-B0 (MixVisionTransformer_B0 + all-MLP decoder) against PaddleSeg's
-- key names and counts and against an independent PyTorch twin (tests/golden/segformer_torch.py,
-- golden tests/golden/segformer_b0_golden.lua): eval logits, train-mode logits, loss and the
-- gradients of the first and last layers, in f64; eval logits in f32 too.
local H = require "harness"
local ms = require "moonseg"
local MG = require "model_golden"
local F = ms.functional

ms.set_num_threads(2)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local G = dofile(here .. "/../golden/segformer_b0_golden.lua")

local function model(o)
  o = o or {}
  return ms.models.SegFormer { num_classes = o.num_classes or 19, embedding_dim = 256,
    backbone = ms.models.backbones.MixVisionTransformer_B0 { drop_path_rate = o.drop_path_rate } }
end

H.case("SegFormer-B0: 191 PaddleSeg keys, 3,719,027 parameters, Linear weights [in, out]", function()
  local m = model()
  local keys = m:state_dict_keys()
  H.eq(#keys, 191)
  H.eq(#keys, G.keys)
  H.eq(m:num_parameters(), 3719027)
  H.eq(m:num_parameters(), G.params)
  H.eq(MG.keys_digest(keys), G.keys_digest, "same key set as the twin")
  local sd = m:state_dict()
  local expect = {
    ["backbone.patch_embed1.proj.weight"] = { 32, 3, 7, 7 },
    ["backbone.patch_embed1.norm.weight"] = { 32 },
    ["backbone.patch_embed2.proj.weight"] = { 64, 32, 3, 3 },
    ["backbone.block1.0.attn.q.weight"] = { 32, 32 },
    ["backbone.block1.0.attn.kv.weight"] = { 32, 64 },
    ["backbone.block1.0.attn.kv.bias"] = { 64 },
    ["backbone.block1.0.attn.sr.weight"] = { 32, 32, 8, 8 },
    ["backbone.block1.1.attn.norm.bias"] = { 32 },
    ["backbone.block3.1.mlp.fc1.weight"] = { 160, 640 },
    ["backbone.block3.1.mlp.dwconv.dwconv.weight"] = { 640, 1, 3, 3 },
    ["backbone.block4.1.mlp.fc2.weight"] = { 1024, 256 },
    ["backbone.norm4.weight"] = { 256 },
    ["linear_c4.proj.weight"] = { 256, 256 },
    ["linear_c1.proj.weight"] = { 32, 256 },
    ["linear_fuse._conv.weight"] = { 256, 1024, 1, 1 },
    ["linear_fuse._batch_norm._variance"] = { 256 },
    ["linear_pred.weight"] = { 19, 256, 1, 1 },
    ["linear_pred.bias"] = { 19 },
  }
  for k, shape in pairs(expect) do
    H.eq(sd[k] ~= nil, true, "key " .. k)
    H.same_list(sd[k]:size(), shape, k)
  end
  for _, k in ipairs { "backbone.block4.0.attn.sr.weight", "backbone.block4.0.attn.norm.weight",
    "linear_fuse._conv.bias" } do
    H.eq(sd[k], nil, "no key " .. k)
  end
  -- Paddle's eps: 1e-6 in blocks and stage norms, plain 1e-5 in patch embeds and the sr norm
  local bb = m.backbone
  H.eq(bb.norm1.epsilon, 1e-6)
  H.eq(bb.block2:get(1).norm2.epsilon, 1e-6)
  H.eq(bb.patch_embed1.norm.epsilon, 1e-5)
  H.eq(bb.block1:get(1).attn.norm.epsilon, 1e-5)
  -- drop path rises linearly to 0.1 over the 8 blocks
  H.eq(bb.block1:get(1).drop_path.drop_prob, 0)
  H.near(bb.block4:get(2).drop_path.drop_prob, 0.1, 1e-12)
  H.near(bb.block2:get(2).drop_path.drop_prob, 0.3 / 7, 1e-12)
end)

H.case("backbone alone: four maps at strides 4, 8, 16, 32 with feat_channels", function()
  local bb = ms.models.backbones.MixVisionTransformer_B0 {}
  bb:eval()
  local outs = ms.no_grad(function() return bb(ms.randn(1, 3, 64, 96)) end)
  H.eq(#outs, 4)
  H.same_list(bb.feat_channels, { 32, 64, 160, 256 })
  H.same_list(outs[1]:size(), { 1, 32, 16, 24 })
  H.same_list(outs[4]:size(), { 1, 256, 2, 3 })
end)

local function golden_model(dtype)
  local m = model { drop_path_rate = 0 }
  if dtype == "f64" then MG.module_to(m, "f64") end
  MG.fill_model(m)
  m.dropout.p = 0
  local x = ms.empty(G.input_shape, { dtype = dtype })
  MG.fill("input", x)
  return m, x
end

H.case("matches the PyTorch twin in f64: eval logits, train logits, loss, first/last grads", function()
  -- Both sides compute in f64 and differ only in summation order: observed errors ~1e-14.
  local m, x = golden_model("f64")
  m:eval()
  local ev = ms.no_grad(function() return m(x) end)
  H.eq(#ev, 1)
  MG.compare("eval", ev[1], G.eval[1], 1e-10, 1e-10, 1e-10)
  m:train()
  local outs = m(x)
  H.eq(#outs, 1)
  MG.compare("train", outs[1], G.train[1], 1e-10, 1e-10, 1e-10)
  local target = MG.label { G.input_shape[1], G.input_shape[3], G.input_shape[4] }
  local loss = F.cross_entropy(outs[1], target, { ignore_index = 255 })
  H.near(loss:item(), G.loss, 1e-12)
  loss:backward()
  local sd = m:state_dict()
  MG.compare("grad first", sd["backbone.patch_embed1.proj.weight"].grad, G.grad_first, 1e-9, 1e-9, 1e-9)
  MG.compare("grad last", sd["linear_pred.weight"].grad, G.grad_last, 1e-9, 1e-9, 1e-9)
end)

H.case("f32 eval logits against the f64 twin", function()
  -- f32 rounding over ~40 layers with reductions up to 1,024 terms: observed ~1e-6; bounds
  -- leave 10x and still catch a wrong eps (1e-6 vs 1e-5 moves logits by >1e-4).
  local m, x = golden_model("f32")
  m:eval()
  local ev = ms.no_grad(function() return m(x) end)
  MG.compare("f32 eval", ev[1], G.eval[1], 3e-5, 1e-5, 1e-6)
end)

H.case("train mode: dropout2d and drop path are active and change the logits", function()
  ms.manual_seed(1)
  local m = model()
  local x = ms.randn(2, 3, 32, 32)
  m:eval()
  local a = ms.no_grad(function() return m(x)[1] end)
  m:train()
  local b = ms.no_grad(function() return m(x)[1] end)
  H.eq((a - b):abs():max():item() > 0, true)
  H.same_list(b:size(), { 2, 19, 32, 32 })
end)

H.case("with_cp: the same loss and gradients (DropPath masks replayed), less memory held for backward", function()
  -- held: what the graph keeps for backward after the forward (H.held_by). The
  -- peak itself does not drop at these sizes: forward temporaries wait for the Lua collector
  -- (measured 31.0 vs 31.0 MB for SegFormer at 128x128) and oneDNN's weight copies dominate.
  local function run(with_cp)
    local m = ms.models.SegFormer { num_classes = 19, embedding_dim = 256,
      backbone = ms.models.backbones.MixVisionTransformer_B0 { with_cp = with_cp, drop_path_rate = 0.5 } }
    MG.fill_model(m)
    m.dropout.p = 0
    local x = ms.empty({ 2, 3, 128, 128 })
    MG.fill("input", x)
    ms.manual_seed(9) -- the same drop-path draws in both runs
    local held, loss = H.held_by(function() return F.cross_entropy(m(x)[1], MG.label { 2, 128, 128 }) end)
    loss:backward()
    local sd = m:state_dict()
    return loss:item(), sd["backbone.patch_embed1.proj.weight"].grad, sd["backbone.block2.1.mlp.fc1.weight"].grad,
      held
  end
  local l0, g0, h0, p0 = run(false)
  local l1, g1, h1, p1 = run(true)
  H.near(l1, l0, 1e-6)
  H.eq((g1 - g0):abs():max():item() <= 1e-5 * (1 + g0:abs():max():item()), true, "first-layer grads")
  H.eq((h1 - h0):abs():max():item() <= 1e-5 * (1 + h0:abs():max():item()), true, "block grads")
  -- storages made by the forward and alive after it: measured 33.3 -> 22.4 MB (OCRNet, 64x64),
  -- 36.5 -> 17.2 MB (SegFormer, 128x128)
  assert(p1 < p0 * 0.8, string.format("held memory with_cp %.1f MB vs %.1f MB", p1 / 2 ^ 20, p0 / 2 ^ 20))
end)

H.done()
