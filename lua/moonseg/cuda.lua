-- cuda.lua: ms.cuda, the CUDA device queries and the caching allocator's controls.
local ms = require "moonseg"
local L = ms.lib

local M = {}

-- True when this moonseg has the CUDA backend and at least one device is visible.
function M.is_available() return L.C.ms_has_cuda() == 1 and L.C.ms_cuda_device_count() > 0 end

-- Number of visible CUDA devices (0 without the backend, a driver or a device).
function M.device_count() return tonumber(L.C.ms_cuda_device_count()) end

local function dev(i)
  if i == nil then return "cuda:0" end
  if type(i) == "number" then return "cuda:" .. i end
  return i
end

-- {allocated=, reserved=, peak=, storages=} in bytes for cuda:i (default 0).
function M.memory_stats(i) return ms.memory_stats(dev(i)) end
function M.memory_allocated(i) return M.memory_stats(i).allocated end
function M.memory_reserved(i) return M.memory_stats(i).reserved end
function M.max_memory_allocated(i) return M.memory_stats(i).peak end
function M.reset_peak_memory_stats(i) ms.reset_peak_memory(dev(i)) end
-- Returns the allocator's cached free blocks to the driver.
function M.empty_cache(i) ms.empty_cache(dev(i)) end

return M
