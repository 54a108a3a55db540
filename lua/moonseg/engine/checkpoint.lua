-- checkpoint.lua: save_dir/iter_N/{model,optim,ema}.safetensors + state.json, best_model/,
-- keep_checkpoint_max; every checkpoint is built in a temporary directory and renamed into
-- place, so a crash leaves either the whole checkpoint or none of it.
local ms = require "moonseg"
local json = require "moonseg.json"

local M = {}

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
M.exists = exists

function M.mkdir(path)
  if not sh("mkdir -p " .. quote(path)) then error("cannot create directory " .. path, 2) end
end

local function write_text(path, text) ms.lib.check(ms.lib.C.ms_file_write_atomic(path, text, #text), 2) end
M.write_text = write_text

-- Writes the files of a checkpoint into a temporary sibling of dir, then renames it to dir
-- (an older dir of that name is moved aside first and removed after).
local function write_dir(dir, files, state)
  local tmp = string.format("%s.tmp.%d", dir, math.floor(ms.time() * 1e3) % 1e9)
  sh("rm -rf " .. quote(tmp))
  M.mkdir(tmp)
  for name, content in pairs(files) do
    ms.save(tmp .. "/" .. name .. ".safetensors", content.tensors, content.meta)
  end
  write_text(tmp .. "/state.json", json.encode(state, { indent = "  " }) .. "\n")
  local old
  if exists(dir .. "/state.json") or exists(dir) then
    old = dir .. ".old." .. math.floor(ms.time() * 1e3) % 1e9
    os.rename(dir, old)
  end
  local ok, err = os.rename(tmp, dir)
  if not ok then error("cannot move checkpoint into " .. dir .. ": " .. tostring(err), 2) end
  if old then sh("rm -rf " .. quote(old)) end
end

-- save(dir, parts): parts = {model = model, optimizer = opt, ema = ema_or_nil, state = {...}}.
function M.save(dir, parts)
  local files = { model = { tensors = parts.model:state_dict(), meta = { format = "moonseg" } } }
  if parts.optimizer then files.optim = { tensors = parts.optimizer:state_dict() } end
  if parts.ema then files.ema = { tensors = parts.ema:state_dict() } end
  local state = parts.state or {}
  -- what rebuilds the model (models/registry.lua), for val/predict given only the checkpoint
  if state.model == nil then state.model = rawget(parts.model, "model_spec") or M.model_spec end
  write_dir(dir, files, state)
end

-- load(dir) -> {model=, optim=, ema=, state=} (tables of tensors and the decoded state).
function M.load(dir)
  if not exists(dir .. "/state.json") or not exists(dir .. "/model.safetensors") then
    error("resume: " .. dir .. " is not a moonseg checkpoint (needs model.safetensors and state.json)", 2)
  end
  local r = { state = json.read_file(dir .. "/state.json") }
  r.model = ms.load(dir .. "/model.safetensors")
  if exists(dir .. "/optim.safetensors") then r.optim = ms.load(dir .. "/optim.safetensors") end
  if exists(dir .. "/ema.safetensors") then r.ema = ms.load(dir .. "/ema.safetensors") end
  return r
end

-- Iterations of the iter_N checkpoints present in save_dir, ascending.
function M.list_iters(save_dir)
  local p = io.popen("ls -1 " .. quote(save_dir) .. " 2>/dev/null")
  local iters = {}
  for name in p:lines() do
    local n = tonumber(name:match("^iter_(%d+)$"))
    if n and exists(save_dir .. "/" .. name .. "/state.json") then iters[#iters + 1] = n end
  end
  p:close()
  table.sort(iters)
  return iters
end

-- Removes the oldest iter_N checkpoints beyond keep (keep <= 0 keeps all).
function M.prune(save_dir, keep)
  if not keep or keep <= 0 then return end
  local iters = M.list_iters(save_dir)
  for i = 1, #iters - keep do sh("rm -rf " .. quote(save_dir .. "/iter_" .. iters[i])) end
end

return M
