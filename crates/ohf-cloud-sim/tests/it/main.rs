mod behaviour;
mod contract;
