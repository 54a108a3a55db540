-- test_ddp.lua: data-parallel training on CPU processes (127.0.0.1): two workers with batch B
-- equal one worker with batch 2B, SyncBatchNorm equals BatchNorm on the concatenated batch,
-- bucketed all-reduce averages (a missing gradient counts as zero), SyncBN conversion and
-- checkpoints, resume of a 2-worker recipe run. Workers: tests/lua/ddp_worker.lua and the
-- PP-LiteSeg recipe, started through the recipes' own launcher (--nproc).
local H = require "harness"
local ms = require "moonseg"
local ddp = require "moonseg.engine.ddp"
local nn = ms.nn

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local worker = src .. "/tests/lua/ddp_worker.lua"
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

-- Runs a shell command (bounded by coreutils timeout); returns output, exit code.
local function sh(cmd)
  local p = io.popen("timeout -s KILL 80 " .. cmd .. " 2>&1; echo \"EXIT:$?\"")
  local s = p:read("*a")
  p:close()
  local code = tonumber(s:match("EXIT:(%d+)%s*$"))
  return s, code
end
local function result(prefix, rank)
  local f = loadfile(prefix .. "." .. rank)
  if not f then error("no result " .. prefix .. "." .. rank) end
  return f()
end
local function worker_run(args)
  local out, code = sh("luajit " .. worker .. " --log_dir " .. tmp .. "/log " .. args)
  if code ~= 0 then error("worker run failed (" .. tostring(code) .. "):\n" .. out) end
  return out
end

H.case("two workers with batch B equal one worker with batch 2B (SGD, conv + SyncBN)", function()
  worker_run("--out " .. tmp .. "/one --batch 4 --steps 3")
  for _, mb in ipairs { "25", "0.0001" } do
    local pre = tmp .. "/two_" .. mb
    worker_run("--out " .. pre .. " --batch 2 --steps 3 --nproc 2 --bucket_mb " .. mb)
    local one, r0, r1 = result(tmp .. "/one", 0), result(pre, 0), result(pre, 1)
    H.eq(r0.world, 2)
    H.eq(r0.converted, 1, "one BatchNorm2d converted")
    -- f32 everywhere: the two runs sum in different orders (per-rank partial sums, SyncBN's
    -- merged statistics, the ring all-reduce), so they agree to rounding, not bit for bit
    for s = 1, 3 do H.near(r0.losses[s], one.losses[s], 1e-5 * math.abs(one.losses[s]), "loss step " .. s) end
    H.eq(#r0.params, #one.params)
    for i = 1, #one.params do
      H.near(r0.params[i], one.params[i], 2e-5, "parameter element " .. i)
      H.eq(r1.params[i], r0.params[i], "ranks hold bit-identical parameters")
    end
    for i = 1, #one.buffers do H.near(r0.buffers[i], one.buffers[i], 2e-5, "BN running stat " .. i) end
    if mb == "0.0001" then
      H.eq(r0.nbuckets, 3, "tiny buckets")
      H.eq(r0.early, 3, "every bucket launched from the hooks while backward ran")
    else
      H.eq(r0.nbuckets, 1)
    end
  end
end)

H.case("with ignored pixels uneven across ranks, the loss is the global batch's mean by default", function()
  worker_run("--out " .. tmp .. "/ce1 --loss ce --batch 4 --steps 3")
  local one = result(tmp .. "/ce1", 0)
  local function maxdiff(r)
    local m = 0
    for i = 1, #one.params do m = math.max(m, math.abs(r.params[i] - one.params[i])) end
    return m
  end
  worker_run("--out " .. tmp .. "/ceg --loss ce --batch 2 --steps 3 --nproc 2")
  local g = result(tmp .. "/ceg", 0)
  for s = 1, 3 do H.near(g.losses[s], one.losses[s], 1e-5 * math.abs(one.losses[s]), "loss step " .. s) end
  H.eq(#g.params, #one.params)
  if maxdiff(g) > 2e-5 then error(string.format("global mean: parameters differ by %.3e from one worker", maxdiff(g))) end
  -- PyTorch's per-rank mean weights rank 0's 6 valid pixels of sample 1 like rank 1's 30
  worker_run("--out " .. tmp .. "/cer --loss ce --batch 2 --steps 3 --nproc 2 --loss_mean rank")
  local r = result(tmp .. "/cer", 0)
  if not (maxdiff(r) > 1e-3) then error(string.format("--loss_mean rank should differ, max diff %.3e", maxdiff(r))) end
end)

-- One SyncBatchNorm forward/backward on 2 ranks (3 and 1 samples) against BatchNorm on the
-- whole batch in this process; tol is relative to each result's norm.
local function syncbn_case(dtype, tol)
  worker_run("--mode syncbn --dtype " .. dtype .. " --out " .. tmp .. "/sbn" .. dtype .. " --nproc 2")
  local r0, r1 = result(tmp .. "/sbn" .. dtype, 0), result(tmp .. "/sbn" .. dtype, 1)
  local data = require("ddp_syncbn_data")(dtype)
  local xa = data.x:clone():requires_grad_()
  local bn = nn.BatchNorm2d(5)
  bn:register_parameter("weight", data.w)
  bn:register_parameter("bias", data.b)
  bn._mean, bn._variance = data.mean, data.var
  local y = bn(xa)
  ;(y * data.c):sum():backward()
  local function close(got, want, what)
    local num, den = 0, 0
    for i = 1, #want do
      num = num + (got[i] - want[i]) ^ 2
      den = den + want[i] ^ 2
    end
    H.eq(#got, #want, what .. " length")
    local rel = math.sqrt(num / math.max(den, 1e-300))
    if not (rel <= tol) then error(string.format("%s: relative difference %.3e > %.1e", what, rel, tol), 2) end
  end
  local function cat(a, b)
    local t = {}
    for _, v in ipairs(a) do t[#t + 1] = v end
    for _, v in ipairs(b) do t[#t + 1] = v end
    return t
  end
  close(cat(r0.y, r1.y), y:to("f64"):reshape(-1):tolist(), "y")
  close(cat(r0.dx, r1.dx), xa.grad:to("f64"):reshape(-1):tolist(), "dx")
  local dw, db = {}, {}
  -- each rank returns its share of dweight/dbias; data parallel sums (averages) them
  for c = 1, 5 do dw[c], db[c] = r0.dw[c] + r1.dw[c], r0.db[c] + r1.db[c] end
  close(dw, bn.weight.grad:to("f64"):tolist(), "dweight")
  close(db, bn.bias.grad:to("f64"):tolist(), "dbias")
  close(r0.mean, bn._mean:to("f64"):tolist(), "running mean")
  close(r0.var, bn._variance:to("f64"):tolist(), "running variance (unbiased)")
  for c = 1, 5 do
    H.eq(r1.mean[c], r0.mean[c])
    H.eq(r1.var[c], r0.var[c])
  end
end

H.case("SyncBatchNorm equals BatchNorm on the concatenated batch (ranks with 3 and 1 samples)", function()
  syncbn_case("f64", 1e-13)
end)

-- f32 and badly conditioned: SyncBatchNorm must sum in f64 as BatchNorm's kernel does, else
-- 2 x B and 1 x 2B training drift apart (issue 13, item 1)
H.case("SyncBatchNorm in f32 rounds like BatchNorm (mean 50x the spread, nearly constant gradient)", function()
  syncbn_case("f32", 1e-6)
end)

H.case("bucketed all-reduce: averaged gradients; a parameter without gradient counts as zero", function()
  worker_run("--mode buckets --out " .. tmp .. "/bk --nproc 2 --bucket_mb 0.00002")
  for r = 0, 1 do
    local x = result(tmp .. "/bk", r)
    H.eq(x.nbuckets, 4)
    local sizes = { 3, 5, 1000, 7 }
    for i = 1, 4 do
      H.eq(#x.grads[i], sizes[i])
      for j = 1, sizes[i] do
        -- rank q's gradient: (q + 1) * i + (j - 1) / 8; rank 1 gave none for parameter 2
        local want = i == 2 and (i + (j - 1) / 8) / 2 or ((i + 2 * i) / 2 + (j - 1) / 8)
        if x.grads[i][j] ~= want then
          error(string.format("rank %d grad %d[%d] = %.17g, want %.17g", r, i, j, x.grads[i][j], want))
        end
      end
    end
  end
end)

H.case("SyncBatchNorm in one process is BatchNorm; conversion keeps state-dict keys", function()
  ms.manual_seed(3)
  local x = ms.randn({ 3, 4, 5, 5 }, { dtype = "f64" })
  local bn, sbn = nn.BatchNorm2d(4), nn.SyncBatchNorm(4)
  local xa, xb = x:clone():requires_grad_(), x:clone():requires_grad_()
  local ya, yb = bn(xa), sbn(xb)
  ya:pow(2):sum():backward()
  yb:pow(2):sum():backward()
  H.near(yb:reshape(-1):tolist(), ya:reshape(-1):tolist(), 1e-14)
  H.near(xb.grad:reshape(-1):tolist(), xa.grad:reshape(-1):tolist(), 1e-14)
  H.near(sbn._variance:tolist(), bn._variance:tolist(), 1e-14)
  sbn:eval()
  bn:eval()
  H.near(sbn(x):reshape(-1):tolist(), bn(x):reshape(-1):tolist(), 1e-14, "eval mode")
  local m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
  local keys = table.concat(m:state_dict_keys(), ",")
  local w = m:get(2).weight
  H.eq(ddp.convert_sync_batchnorm(m), 2)
  H.eq(m:get(2).__class, nn.SyncBatchNorm)
  H.eq(m:get(3):get(1).__class, nn.SyncBatchNorm)
  H.eq(table.concat(m:state_dict_keys(), ","), keys, "same keys")
  H.eq(rawequal(m:get(2).weight, w), true, "tensors shared, not copied")
  -- checkpoints load either way
  local plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
  ms.no_grad(function() m:get(2)._mean:fill_(0.25) end)
  plain:load_state_dict(m:state_dict())
  H.eq(plain:get(2)._mean[1]:item(), 0.25)
  m:load_state_dict(plain:state_dict())
  H.raises(function() sbn:train(); sbn(ms.ones(3)) end, "batch_norm")
end)

H.case("resume of a 2-worker PP-LiteSeg run equals the uninterrupted 2-worker run", function()
  local base = "luajit " .. src .. "/recipes/pp_liteseg.lua --nproc 2 --iters 4 --batch_size 2 --crop_size 32 32 " ..
    "--save_interval 2 --do_eval false --num_workers 0 --threads 1 --log_iters 2 --log_dir " .. tmp .. "/rlog "
  local out, code = sh(base .. "--save_dir " .. tmp .. "/full")
  if code ~= 0 then error("full run failed:\n" .. out) end
  if not out:find("[DDP]", 1, true) then error("no [DDP] lines on the console:\n" .. out) end
  out, code = sh(base .. "--save_dir " .. tmp .. "/res --resume_model " .. tmp .. "/full/iter_2")
  if code ~= 0 then error("resumed run failed:\n" .. out) end
  H.eq(os.execute("test ! -e " .. tmp .. "/res/iter_2") == 0 or os.execute("test ! -e " .. tmp .. "/res/iter_2") == true, true,
    "the resumed run starts after iter 2")
  local function bytes(p)
    local f = assert(io.open(p, "rb"))
    local s = f:read("*a")
    f:close()
    return s
  end
  local a, b = bytes(tmp .. "/full/iter_4/model.safetensors"), bytes(tmp .. "/res/iter_4/model.safetensors")
  H.eq(#a, #b)
  H.eq(a == b, true, "iter_4 weights bit-identical")
  H.eq(bytes(tmp .. "/full/iter_4/optim.safetensors") == bytes(tmp .. "/res/iter_4/optim.safetensors"), true,
    "optimizer state bit-identical")
end)

os.execute("rm -rf " .. tmp)
H.done()
