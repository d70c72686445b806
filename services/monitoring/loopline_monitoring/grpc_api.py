"""The gRPC servicer: translate requests into api calls (errors are translated by the shared interceptor)."""

from __future__ import annotations

import grpc

from loopline.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from loopline_monitoring.api import MonitoringApi


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    def __init__(self, api: MonitoringApi) -> None:
        self.api = api

    async def GetCanaryAnalysis(
        self, request: monitoring_pb2.GetCanaryAnalysisRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.GetCanaryAnalysisResponse:
        return await self.api.get_canary_analysis(model_name=request.model_name, window_seconds=request.window_seconds)

    async def GetDriftStatus(
        self, request: monitoring_pb2.GetDriftStatusRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.GetDriftStatusResponse:
        return await self.api.get_drift_status(model_name=request.model_name)

    async def ListDriftWindows(
        self, request: monitoring_pb2.ListDriftWindowsRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.ListDriftWindowsResponse:
        return await self.api.list_drift_windows(
            model_name=request.model_name, model_version=request.model_version, track=request.track,
            page_size=request.page_size,
        )

    async def GetSkewReport(
        self, request: monitoring_pb2.GetSkewReportRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.GetSkewReportResponse:
        return await self.api.get_skew_report(model_name=request.model_name, model_version=request.model_version)

    async def GenerateReport(
        self, request: monitoring_pb2.GenerateReportRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.GenerateReportResponse:
        return await self.api.generate_report(
            model_name=request.model_name, model_version=request.model_version, history=request.history
        )
