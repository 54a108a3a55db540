-- models/pretrained.lua: loading a converted backbone checkpoint into a network the way
-- PaddleSeg's load_pretrained_model does (keys the network has are loaded, others skipped).
local ms = require "moonseg"

local M = {}

-- load_matching(module, path, who): a checkpoint matching no key, or a mis-shaped key, is an error.
function M.load_matching(module, path, who)
  local sd = ms.load(path)
  local own, use, n = module:state_dict(), {}, 0
  for k, v in pairs(sd) do
    if own[k] then use[k], n = v, n + 1 end
  end
  if n == 0 then error(who .. ": no key of " .. path .. " matches the network", 3) end
  module:load_state_dict(use, false)
  return n
end

return M
