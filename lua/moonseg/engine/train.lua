-- train.lua: the training loop of PaddleSeg's tools/train.py: PolynomialDecay with warmup,
-- multi-output losses with coefficients, [TRAIN] logs, periodic evaluation, best_model,
-- iter_N checkpoints with keep_checkpoint_max, exact resume, EMA, early stop, TensorBoard.
local ms = require "moonseg"
local log = require "moonseg.engine.log"
local ckpt = require "moonseg.engine.checkpoint"
local evaluate = require "moonseg.engine.evaluate"
local EMA = require "moonseg.engine.ema"
local infer = require "moonseg.engine.infer"

local M = {}

-- A few validation predictions as colour overlays (0.6 image + 0.4 pseudo-colour).
local function overlay_images(model, dataset, transforms, n, num_classes)
  local palette = ms.image.pseudo_color_palette(math.max(num_classes, 2))
  local out = {}
  local was = model.training
  model:eval()
  local loader = ms.data.DataLoader(dataset, { batch_size = 1, transforms = transforms })
  for i = 1, math.min(n, dataset:size()) do
    local img = loader:next()
    local raw = ms.image.read((dataset:sample(i))):to("f32")
    -- predicted at the original size (validation transforms may resize)
    local pred = infer.logits(model, img, { size = { raw:size(1), raw:size(2) } }):argmax(2):squeeze(1)
    local color = ms.zeros(raw:size())
    for c = 1, num_classes do
      local mask = pred:eq(c):to("f32"):unsqueeze(3)
      color:add_(mask * ms.tensor(palette[c], { dtype = "f32" }):view(1, 1, 3))
    end
    out[i] = (raw * 0.6 + color * 0.4):to("u8")
  end
  loader:close()
  if was then model:train() end
  return out
end

-- train(cfg): cfg holds the objects (model, datasets, transforms, optimizer, schedule, losses)
-- and the PaddleSeg flags (iters, batch_size, save_dir, ...). Returns a summary table.
function M.train(cfg)
  local model, opt = cfg.model, cfg.optimizer
  local iters, bs = cfg.iters, cfg.batch_size
  local save_dir = cfg.save_dir or "output"
  local rank, world = cfg.rank or 0, cfg.world_size or 1
  local main = rank == 0
  local log_iters = cfg.log_iters or 10
  local save_interval = cfg.save_interval or 1000
  local losses, coefs = cfg.losses.types, cfg.losses.coef
  local nc = cfg.num_classes or cfg.train_dataset.num_classes
  if main then ckpt.mkdir(save_dir) end
  log.quiet = not main

  local loader = ms.data.DataLoader(cfg.train_dataset, { batch_size = bs, num_workers = cfg.num_workers or 0,
    shuffle = true, drop_last = true, transforms = cfg.train_transforms, seed = cfg.seed or 0,
    num_classes = nc, ignore_index = cfg.ignore_index or 255, rank = rank, world_size = world,
    skip_bad = cfg.skip_bad })
  local ema = cfg.use_ema and EMA.new(model, cfg.ema_decay or 0.99) or nil
  local writer = main and cfg.tensorboard ~= false and ms.tensorboard.SummaryWriter(save_dir) or nil

  local start, best, best_iter, stale = 0, -1, -1, 0
  if cfg.resume_model then
    local r = ckpt.load(cfg.resume_model)
    model:load_state_dict(r.model)
    if r.optim then opt:load_state_dict(r.optim) end
    if ema then
      if not r.ema then error("resume: " .. cfg.resume_model .. " has no EMA state but --use_ema is on", 2) end
      ema:load_state_dict(r.ema, r.state.ema_step)
    end
    local s = r.state
    start, best, best_iter, stale = s.iter, s.best_miou or -1, s.best_iter or -1, s.evals_since_best or 0
    if s.rng then ms.set_rng_state(s.rng) end
    if s.data_position then loader:seek(s.data_position) end
    if s.optimizer_state and opt.load_extra_state then opt:load_extra_state(s.optimizer_state) end
    log.info(string.format("Resume model from %s (iter %d)", cfg.resume_model, start))
  end

  model:train()
  local avg_loss, n_avg, batch_cost, reader_cost = 0, 0, 0, 0
  local losses_seen = {}
  local t_run = ms.time()
  local last_eval
  local iter = start
  local stopped_early = false
  while iter < iters do
    iter = iter + 1
    local t0 = ms.time()
    local images, labels, epoch = loader:next()
    local t_read = ms.time() - t0
    local lr = cfg.lr_schedule(iter - 1)
    opt.lr = lr
    local logits = model(images)
    local loss = ms.losses.multi_output(losses, coefs, logits, labels)
    opt:zero_grad()
    loss:backward()
    if cfg.grad_sync then cfg.grad_sync(model) end
    if cfg.clip_grad_norm then ms.optim.clip_grad_norm(model:parameters(), cfg.clip_grad_norm) end
    opt:step()
    if ema then ema:update(model) end
    local l = loss:item()
    if l ~= l then error(string.format("training diverged: loss is nan at iter %d (lr %g)", iter, lr), 0) end
    losses_seen[#losses_seen + 1] = l
    avg_loss, n_avg = avg_loss + l, n_avg + 1
    batch_cost = batch_cost + (ms.time() - t0)
    reader_cost = reader_cost + t_read
    images, labels, logits, loss = nil, nil, nil, nil

    if iter % log_iters == 0 or iter == iters then
      local bc, rc = batch_cost / n_avg, reader_cost / n_avg
      local remain = (iters - iter) * bc
      log.info(string.format("[TRAIN] epoch: %d, iter: %d/%d, loss: %.4f, lr: %.6f, batch_cost: %.4f, " ..
        "reader_cost: %.5f, ips: %.4f samples/sec | ETA %s", epoch + 1, iter, iters, avg_loss / n_avg, lr,
        bc, rc, bs * world / bc, log.eta(remain)))
      if writer then
        writer:add_scalar("Train/loss", avg_loss / n_avg, iter)
        writer:add_scalar("Train/lr", lr, iter)
        writer:add_scalar("Train/batch_cost", bc, iter)
        writer:add_scalar("Train/reader_cost", rc, iter)
      end
      avg_loss, n_avg, batch_cost, reader_cost = 0, 0, 0, 0
    end

    if iter % save_interval == 0 or iter == iters then
      if cfg.do_eval and cfg.val_dataset then
        local function run_eval()
          return evaluate.evaluate(model, cfg.val_dataset, { transforms = cfg.val_transforms,
            num_classes = nc, ignore_index = cfg.ignore_index, aug = cfg.eval_aug,
            num_workers = cfg.num_workers, rank = rank, world_size = world, all_reduce = cfg.metric_sync })
        end
        local r = ema and ema:with_weights(model, run_eval) or run_eval()
        last_eval = r
        if r.miou > best then
          best, best_iter, stale = r.miou, iter, 0
          if main then
            ckpt.save(save_dir .. "/best_model", { model = ema and { state_dict = function() return ema:state_dict() end } or model,
              state = { iter = iter, miou = r.miou, acc = r.acc, kappa = r.kappa, dice = r.mdice } })
          end
        else
          stale = stale + 1
        end
        log.info(string.format("[EVAL] The model with the best validation mIoU (%.4f) was saved at iter %d.", best, best_iter))
        if writer then
          writer:add_scalar("Evaluate/mIoU", r.miou, iter)
          writer:add_scalar("Evaluate/Acc", r.acc, iter)
          writer:add_scalar("Evaluate/Kappa", r.kappa, iter)
          writer:add_scalar("Evaluate/Dice", r.mdice, iter)
          local shots = overlay_images(model, cfg.val_dataset, cfg.val_transforms, cfg.tb_images or 3, nc)
          for i, img in ipairs(shots) do writer:add_image("Evaluate/prediction_" .. i, img, iter) end
          writer:flush()
        end
      end
      if main then
        ckpt.save(save_dir .. "/iter_" .. iter, { model = model, optimizer = opt, ema = ema, state = {
          iter = iter, epoch = loader:position().epoch, data_position = loader:position(),
          rng = ms.get_rng_state(), best_miou = best, best_iter = best_iter, evals_since_best = stale,
          ema_step = ema and ema.step or nil, moonseg = ms.version,
          optimizer_state = opt.extra_state and opt:extra_state() or nil } })
        ckpt.prune(save_dir, cfg.keep_checkpoint_max or 5)
      end
      if cfg.early_stop_intervals and cfg.early_stop_intervals > 0 and stale >= cfg.early_stop_intervals then
        log.info(string.format("Early stop at iter %d: mIoU has not improved for %d evaluations.", iter, stale))
        stopped_early = true
        break
      end
    end
  end
  if loader:skipped() > 0 then
    log.warn(string.format("%d bad samples were skipped (--skip_bad); see the messages above", loader:skipped()))
  end
  loader:close()
  if writer then writer:close() end
  return { iter = iter, best_miou = best, best_iter = best_iter, losses = losses_seen, last_eval = last_eval,
    seconds = ms.time() - t_run, stopped_early = stopped_early }
end

return M
