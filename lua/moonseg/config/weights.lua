-- config/weights.lua: where `pretrained:` weights come from. Nothing is downloaded: a URL
-- names a file in the local weights cache ($MOONSEG_CACHE/weights, else
-- ~/.cache/moonseg/weights), filled once by recipes/tools/convert_pdparams.py --cache URL FILE.
-- The cache name of a URL is the same rule there: scheme dropped, the archive suffix
-- (.pdparams, .tar.gz, .tgz, .zip) replaced by .safetensors, unusual characters as '_'.
local M = {}

function M.cache_dir()
  local env = os.getenv("MOONSEG_CACHE")
  if env and env ~= "" then return env .. "/weights" end
  local xdg = os.getenv("XDG_CACHE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/moonseg/weights" end
  return (os.getenv("HOME") or "/tmp") .. "/.cache/moonseg/weights"
end

function M.is_url(s) return type(s) == "string" and s:match("^%a[%w+.-]*://") ~= nil end

function M.cache_name(url)
  local s = url:gsub("^%a[%w+.-]*://", ""):gsub("[?#].*$", "")
  for _, suf in ipairs { "%.pdparams$", "%.tar%.gz$", "%.tgz$", "%.zip$", "%.safetensors$" } do
    local n
    s, n = s:gsub(suf, "")
    if n > 0 then break end
  end
  s = s:gsub("[^%w._/-]", "_"):gsub("%.%.+", "_")
  return s .. ".safetensors"
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

-- resolve(value, where) -> a local .safetensors path, or nil and a warning (URL not cached).
-- where prefixes errors ("a.yml:3: model.pretrained"). Local paths must exist.
function M.resolve(value, where)
  if M.is_url(value) then
    local path = M.cache_dir() .. "/" .. M.cache_name(value)
    if exists(path) then return path end
    return nil, string.format("%s: %s is not in the local weights cache (%s); nothing is downloaded, " ..
      "training starts from scratch. Fetch the file once and fill the cache with:\n" ..
      "  python3 recipes/tools/convert_pdparams.py --cache %s FILE.pdparams|FILE.tar.gz", where, value, path, value)
  end
  if type(value) ~= "string" then error(where .. ": must be a file path or a URL", 0) end
  if not exists(value) then error(where .. ": weights file not found: " .. value, 0) end
  if value:match("%.pdparams$") or value:match("%.tar%.gz$") then
    error(string.format("%s: %s is a Paddle checkpoint; convert it once with\n" ..
      "  python3 recipes/tools/convert_pdparams.py %s %s.safetensors\nand point pretrained at that file",
      where, value, value, (value:gsub("%.pdparams$", ""):gsub("%.tar%.gz$", ""))), 0)
  end
  return value
end

return M
