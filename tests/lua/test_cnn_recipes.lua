-- test_cnn_recipes.lua: recipes/unet.lua, deeplabv3p.lua and pspnet.lua end to end on a tiny
-- PaddleSeg-format synthetic set: the training loss falls, an mIoU is printed, the checkpoint
-- records the model (state.json) so val.lua / predict.lua rebuild it from --model_path alone;
-- DeepLabV3P with Xception65_deeplab; --with_cp and bad flags.
local H = require "harness"
local ms = require "moonseg"
local json = require "moonseg.json"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

-- A PaddleSeg-format set of small images on disk.
ms.data.Synthetic { dir = tmp .. "/data", train = 8, val = 2, min_size = 48, max_size = 56, seed = 3, mode = "train" }
local root = io.popen("ls -d " .. tmp .. "/data/synthetic_*"):read("*l")

local function losses(out)
  local l = {}
  for v in out:gmatch("%[TRAIN%][^\n]-loss: ([%d%.]+)") do l[#l + 1] = tonumber(v) end
  return l
end

local function train(recipe, extra, iters)
  local save = tmp .. "/" .. recipe .. (extra:find("with_cp") and "_cp" or "")
  local out, rc = sh(string.format("luajit %s/recipes/%s.lua --dataset_root %s --num_classes 5 --iters %d " ..
    "--batch_size 2 --crop_size 48 48 --log_iters 1 --save_interval %d --num_workers 0 --threads 2 " ..
    "--save_dir %s %s", src, recipe, root, iters, iters, save, extra))
  H.eq(rc, 0, out)
  local l = losses(out)
  H.eq(#l, iters, out)
  -- the loss falls: the mean of the last three iterations is below the first
  H.eq((l[iters] + l[iters - 1] + l[iters - 2]) / 3 < l[1], true, recipe .. " losses " .. table.concat(l, " "))
  assert(out:find("[EVAL] #Images: 2 mIoU:", 1, true), out)
  return save, out
end

H.case("unet: loss falls, mIoU printed, state.json names the model, val.lua rebuilds it", function()
  local save = train("unet", "--learning_rate 0.05", 8)
  local st = json.read_file(save .. "/best_model/state.json")
  H.eq(st.model.name, "UNet")
  H.eq(st.model.args.num_classes, 5)
  local out, rc = sh("luajit " .. src .. "/recipes/val.lua --model_path " .. save .. "/best_model --dataset_root " .. root)
  H.eq(rc, 0, out)
  assert(out:find("[EVAL] #Images: 2 mIoU:", 1, true), out)
  out, rc = sh("luajit " .. src .. "/recipes/predict.lua --model_path " .. save .. "/iter_8 --image_path " ..
    root .. "/images/val_0001.jpg --save_dir " .. tmp .. "/pred")
  H.eq(rc, 0, out)
  H.eq(#io.popen("ls " .. tmp .. "/pred/pseudo_color_prediction"):read("*a") > 0, true)
end)

H.case("deeplabv3p (ResNet50_vd OS8): loss falls, checkpoint rebuilds with its backbone", function()
  local save = train("deeplabv3p", "--learning_rate 0.005", 6)
  local st = json.read_file(save .. "/iter_6/state.json")
  H.eq(st.model.name, "DeepLabV3P")
  H.eq(st.model.args.backbone.name, "ResNet50_vd")
  H.eq(st.model.args.backbone.args.output_stride, 8)
  H.same_list(st.model.args.aspp_ratios, { 1, 12, 24, 36 })
  local out, rc = sh("luajit " .. src .. "/recipes/val.lua --model_path " .. save .. "/iter_6/model.safetensors --dataset_root " .. root)
  H.eq(rc, 0, out)
  assert(out:find("[EVAL] #Images: 2 mIoU:", 1, true), out)
end)

H.case("deeplabv3p --backbone Xception65_deeplab --with_cp: loss falls, OS16 spec recorded", function()
  local save = train("deeplabv3p", "--backbone Xception65_deeplab --learning_rate 0.005 --with_cp", 6)
  local st = json.read_file(save .. "/best_model/state.json")
  H.eq(st.model.args.backbone.name, "Xception65_deeplab")
  H.eq(st.model.args.backbone.args.output_stride, 16)
  H.eq(st.model.args.backbone.args.with_cp, true)
  H.same_list(st.model.args.backbone_indices, { 1, 2 })
  H.same_list(st.model.args.aspp_ratios, { 1, 6, 12, 18 })
end)

H.case("pspnet --with_cp: loss falls with both heads (coefficients 1, 0.4)", function()
  local save = train("pspnet", "--learning_rate 0.005 --with_cp", 6)
  local st = json.read_file(save .. "/best_model/state.json")
  H.eq(st.model.name, "PSPNet")
  H.eq(st.model.args.backbone.args.with_cp, true)
end)

H.case("flags: unknown backbone and bad values are refused with the accepted choices", function()
  local out, rc = sh("luajit " .. src .. "/recipes/deeplabv3p.lua --backbone ResNet18 --iters 1")
  H.eq(rc ~= 0, true)
  assert(out:find("ResNet50_vd", 1, true), out)
  out, rc = sh("luajit " .. src .. "/recipes/pspnet.lua --with_cp maybe")
  H.eq(rc ~= 0, true)
  out, rc = sh("luajit " .. src .. "/recipes/unet.lua --help")
  assert(out:find("with_cp", 1, true), out)
end)

os.execute("rm -rf " .. tmp)
H.done()
