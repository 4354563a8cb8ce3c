-- Argo CD health check for forecast.dev/ForecastModel.
-- Install as the argocd-cm key resource.customizations.health.forecast.dev_ForecastModel
-- (or the chart value argocd.healthCheck, or argocd-operator's resourceHealthChecks).
-- Lua 5.1 as Argo CD runs it: base, table and package only; no string library.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function said(c)
  return c.reason .. ": " .. c.message
end

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "paused: the operator moves no pod until spec.paused is false"
  return hs
end

if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report on this ForecastModel"
  return hs
end

if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "the operator has not yet acted on generation " .. tostring(obj.metadata.generation)
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = said(stalled)
  return hs
end

local reconciling = condition("Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  local rollout = obj.status.rollout
  if rollout ~= nil and rollout.phase == "Baking" and rollout.version ~= nil then
    local canary = 0
    if rollout.canaryPods ~= nil then
      canary = #rollout.canaryPods
    end
    local bake = "its bake"
    if obj.spec.rollout ~= nil and obj.spec.rollout.canary ~= nil and obj.spec.rollout.canary.bake ~= nil then
      bake = obj.spec.rollout.canary.bake
    end
    local from = rollout.from
    if from == nil then
      from = "?"
    end
    hs.message = "canary " .. tostring(canary) .. "/" .. tostring(obj.status.replicas) ..
      " pods on version " .. rollout.version .. ", baking " .. bake ..
      " before the verdict; the others stay on version " .. from
  elseif rollout ~= nil and rollout.version ~= nil and rollout.phase ~= nil and rollout.phase ~= "Idle" then
    hs.message = "rolling out version " .. rollout.version .. " (" .. rollout.phase .. ")"
  else
    hs.message = said(reconciling)
  end
  return hs
end

local degraded = condition("Degraded")
if is_true(degraded) then
  hs.status = "Degraded"
  hs.message = said(degraded)
  return hs
end

local ready = condition("Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = said(ready)
else
  hs.message = "waiting for the pods"
end
return hs
