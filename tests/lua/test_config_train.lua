-- test_config_train.lua: PaddleSeg's command lines on a PaddleSeg config: recipes/train.lua
-- --config trains exactly as the Lua recipe (same losses, same weights, same seed), resumes
-- exactly, honours --use_vdl; val.lua/predict.lua --config; --print_config; CLI errors; --opts;
-- a type: ADE20K config trained for one iteration.
local H = require "harness"
local ms = require "moonseg"
local Fx = require "config_fixture"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp .. "/configs/base")
local root = Fx.optic_disc(tmp .. "/data/optic_disc_seg", { train = 4, val = 2, size = 32 })

local function sh(cmd)
  local p = io.popen("cd " .. tmp .. " && " .. cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end
local function losses(out)
  local r = {}
  for l in out:gmatch("iter: %d+/%d+, loss: ([%d.]+)") do r[#r + 1] = l end
  return r
end
local function same_weights(a, b)
  local x, y = ms.load(a), ms.load(b)
  local n = 0
  for k, v in pairs(x) do
    H.eq(y[k] ~= nil, true, k)
    H.eq(v:sub(y[k]):abs():max():item(), 0, k)
    n = n + 1
  end
  return n
end

-- A _base_ chain as PaddleSeg's configs use it: the quick-start base, a child that overrides.
Fx.write(tmp .. "/configs/base/optic_base.yml", Fx.quick_start(root, 32):gsub("iters: 4", "iters: 1000"))
Fx.write(tmp .. "/configs/pp_liteseg_optic.yml", "_base_: base/optic_base.yml\niters: 3\n")
local train = "luajit " .. src .. "/recipes/train.lua --config configs/pp_liteseg_optic.yml"
local common = " --log_iters 1 --seed 5 --num_workers 0 --save_interval 3"

H.case("train.lua --config trains exactly as recipes/pp_liteseg.lua (same losses, same weights)", function()
  local out, rc = sh(train .. common .. " --do_eval --use_vdl --save_dir out_cfg --save_interval 1 --keep_checkpoint_max 2 " ..
    "--precision fp32 --amp_level O1")
  H.eq(rc, 0, out)
  local a = losses(out)
  H.eq(#a, 3, out)
  H.write_file(tmp .. "/out_cfg.log", out)
  H.eq(out:find("[EVAL]", 1, true) ~= nil, true, "--do_eval evaluates")
  local lua_out, rc2 = sh("luajit " .. src .. "/recipes/pp_liteseg.lua --dataset_root data/optic_disc_seg --iters 3 " ..
    "--batch_size 2 --crop_size 32 32 --learning_rate 0.01 --do_eval false --save_dir out_lua" .. common)
  H.eq(rc2, 0, lua_out)
  H.same_list(a, losses(lua_out), "per-iteration losses")
  local n = same_weights(tmp .. "/out_cfg/iter_3/model.safetensors", tmp .. "/out_lua/iter_3/model.safetensors")
  H.eq(n > 100, true)
  H.eq(io.popen("ls " .. tmp .. "/out_cfg | grep -c events.out.tfevents"):read("*l"), "1", "--use_vdl")
end)

H.case("--resume_model continues exactly; without --use_vdl no event files", function()
  H.eq(H.exists(tmp .. "/out_cfg/iter_1"), false, "--keep_checkpoint_max 2")
  local out, rc = sh(train .. common .. " --resume_model out_cfg/iter_2 --save_dir out_res")
  H.eq(rc, 0, out)
  H.same_list(losses(out), { losses(H.read_file(tmp .. "/out_cfg.log"))[3] }, "the third iteration's loss")
  H.eq(io.popen("ls " .. tmp .. "/out_res | grep -c events.out.tfevents"):read("*l"), "0")
  same_weights(tmp .. "/out_res/iter_3/model.safetensors", tmp .. "/out_cfg/iter_3/model.safetensors")
end)

H.case("val.lua and predict.lua take --config", function()
  local out, rc = sh("luajit " .. src .. "/recipes/val.lua --config configs/pp_liteseg_optic.yml --model_path out_cfg/iter_3")
  H.eq(rc, 0, out)
  local miou = out:match("mIoU: ([%d.]+)")
  H.eq(miou ~= nil, true, out)
  local out2 = sh("luajit " .. src .. "/recipes/val.lua --model_path out_lua/iter_3 --dataset_root data/optic_disc_seg " ..
    "--num_classes 2 --backbone STDC2")
  H.eq(out2:match("mIoU: ([%d.]+)"), miou, "the same model evaluated by the Lua recipe")
  out, rc = sh("luajit " .. src .. "/recipes/predict.lua --config configs/pp_liteseg_optic.yml --model_path out_cfg/iter_3 " ..
    "--image_path data/optic_disc_seg/JPEGImages/N0005.jpg --save_dir pred")
  H.eq(rc, 0, out)
  H.eq(H.exists(tmp .. "/pred/pseudo_color_prediction/N0005.png"), true, out)
end)

H.case("--print_config shows the merged config; command-line errors name the file and key", function()
  local out, rc = sh(train .. " --print_config")
  H.eq(rc, 0, out)
  H.eq(out:match("\niters: (%d+)  # configs/pp_liteseg_optic.yml:2"), "3", out)
  H.eq(out:find("type: STDC2  # configs/base/optic_base.yml:", 1, true) ~= nil, true, out)
  out, rc = sh("luajit " .. src .. "/recipes/train.lua --config configs/nope.yml")
  H.eq(rc, 2) H.eq(out:find("config file not found: configs/nope.yml", 1, true) ~= nil, true, out)
  out, rc = sh(train .. " --backbone STDC1")
  H.eq(rc, 2) H.eq(out:find("model.backbone", 1, true) ~= nil, true, out)
  out, rc = sh(train .. " --iters 0")
  H.eq(rc, 2) H.eq(out:find("--iters must be >= 1", 1, true) ~= nil, true, out)
  Fx.write(tmp .. "/configs/typo.yml", "_base_: base/optic_base.yml\nmodel:\n  backbone:\n    type: STDC3\n")
  out, rc = sh("luajit " .. src .. "/recipes/train.lua --config configs/typo.yml --iters 1")
  H.eq(rc, 2)
  H.eq(out:find("configs/typo.yml:4: model.backbone.type: unknown backbone type 'STDC3'", 1, true) ~= nil, true, out)
end)

H.case("--opts changes the merged config and wins over --iters/--batch_size/--learning_rate (PaddleSeg's order)", function()
  local out, rc = sh(train .. " --opts model.backbone.type=STDC1 iters=2 batch_size=4 lr_scheduler.learning_rate=0.05 " ..
    "--iters 5 --batch_size 1 --learning_rate 0.5 --log_iters 1 --seed 5 --save_interval 2 --save_dir out_opts")
  H.eq(rc, 0, out)
  H.eq(#losses(out), 2, out)
  -- 4 training samples: batch 4 makes iteration 2 the second epoch (batch 1 would still be in the first)
  H.eq(out:match("epoch: (%d+), iter: 2/2"), "2", out)
  H.eq(out:match("iter: 1/2, loss: [%d.]+, lr: ([%d.]+)"), "0.050000", out)
  local sd = ms.load(tmp .. "/out_opts/iter_2/model.safetensors")
  H.eq(sd["backbone.features.7.conv_list.0.conv.weight"] ~= nil, true, "STDC1's 8 stages")
  H.eq(sd["backbone.features.8.conv_list.0.conv.weight"], nil, "not STDC2's 14")
  out, rc = sh(train .. " --print_config --opts model.backbone.type=STDC1")
  H.eq(rc, 0, out)
  H.eq(out:find("type: STDC1  # --opts model.backbone.type=STDC1", 1, true) ~= nil, true, out)
  -- val.lua takes --opts too: without it the STDC2 config does not fit the STDC1 weights
  out, rc = sh("luajit " .. src .. "/recipes/val.lua --config configs/pp_liteseg_optic.yml --model_path out_opts/iter_2")
  H.eq(rc ~= 0, true, out)
  out, rc = sh("luajit " .. src .. "/recipes/val.lua --config configs/pp_liteseg_optic.yml --model_path out_opts/iter_2 " ..
    "--opts model.backbone.type=STDC1")
  H.eq(rc, 0, out)
  H.eq(out:match("%[EVAL%] #Images: (%d+)"), "2", out)
  out, rc = sh(train .. " --opts model.backbone.typo=STDC1")
  H.eq(rc, 2)
  H.eq(out:find("--opts model.backbone.typo=STDC1: model.backbone.typo is not in the config", 1, true) ~= nil, true, out)
end)

H.case("--opts reaches every worker of a --nproc 2 launch (passed on as --opts=ITEM)", function()
  -- a worker without the STDC1 override would build STDC2 and fail DDP's same-parameters check at start
  local out, rc = sh(train .. " --opts model.backbone.type=STDC1 iters=2 --nproc 2 --log_iters 1 --seed 5 " ..
    "--num_workers 0 --save_interval 2 --save_dir out_opts2 --log_dir out_opts2/log")
  H.eq(rc, 0, out)
  H.eq(out:match("iter: 2/(%d+)"), "2", out)
  local sd = ms.load(tmp .. "/out_opts2/iter_2/model.safetensors")
  H.eq(sd["backbone.features.7.conv_list.0.conv.weight"] ~= nil, true, "STDC1's 8 stages")
  H.eq(sd["backbone.features.8.conv_list.0.conv.weight"], nil, "not STDC2's 14")
end)

H.case("recipes/train.lua --config with type: ADE20K trains one iteration on 150 classes and evaluates", function()
  Fx.ade20k(tmp .. "/data/ADEChallengeData2016")
  Fx.write(tmp .. "/configs/ade.yml", Fx.ade20k_config("data/ADEChallengeData2016"))
  local out, rc = sh("luajit " .. src .. "/recipes/train.lua --config configs/ade.yml --log_iters 1 --seed 3 --do_eval " ..
    "--save_interval 1 --save_dir out_ade")
  H.eq(rc, 0, out)
  local l = tonumber(losses(out)[1])
  -- three heads of 150-way cross-entropy from random weights: each about log(150) = 5.0
  H.eq(l ~= nil and l > 3 * 0.5 * math.log(150) and l < 3 * 2 * math.log(150), true, out)
  H.eq(out:match("%[EVAL%] #Images: (%d+)"), "2", out)
  local sd = ms.load(tmp .. "/out_ade/iter_1/model.safetensors")
  H.same_list(sd["seg_heads.0.conv_out.weight"]:size(), { 150, 64, 1, 1 }, "a 150-way classifier")
end)

os.execute("rm -rf " .. tmp)
H.done()
