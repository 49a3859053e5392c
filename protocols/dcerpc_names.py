"""Zeek's names for DCE/RPC interfaces and operations (base/protocols/dce-rpc/consts.zeek).

Protocol constants transcribed as facts: interface UUID -> endpoint name, and per interface
the operation name of each opnum. Unknown ones get Zeek's defaults ``unknown-<uuid>`` and
``unknown-<opnum>``, after :mod:`protocols.dcerpc_impacket` had its say for interfaces Zeek
does not know. Only interfaces a Windows-network defender meets are listed with their
operations; the endpoint map is complete as Zeek has it. Zeek's names differ from
Wireshark's in places (``LsarOpenPolicy`` vs ``lsa_OpenPolicy``, ``SamrConnect5`` vs
``Connect5``); these are Zeek's on purpose.
"""

from __future__ import annotations

from protocols import dcerpc_impacket

UUID_ENDPOINTS: dict[str, str] = {
    "367abb81-9844-35f1-ad32-98f038001003": "svcctl",
    "86d35949-83c9-4044-b424-db363231fd0c": "ITaskSchedulerService",
    "378e52b0-c0a9-11cf-822d-00aa0051e40f": "sasec",
    "1ff70682-0a51-30e8-076d-740be8cee98b": "atsvc",
    "0a74ef1c-41a4-4e06-83ae-dc74fb1cdd53": "idletask",
    "906b0ce0-c70b-1067-b317-00dd010662da": "IXnRemote",
    "ae33069b-a2a8-46ee-a235-ddfd339be281": "IRPCRemoteObject",
    "0b6edbfa-4a24-4fc6-8a23-942b1eca65d1": "IRPCAsyncNotify",
    "afa8bd80-7d8a-11c9-bef4-08002b102989": "mgmt",
    "f5cc59b4-4264-101a-8c59-08002b2f8426": "FrsRpc",
    "000001a0-0000-0000-c000-000000000046": "IRemoteSCMActivator",
    "00000143-0000-0000-c000-000000000046": "IRemUnknown2",
    "12345778-1234-abcd-ef00-0123456789ab": "lsarpc",
    "76f03f96-cdfd-44fc-a22c-64950a001209": "IRemoteWinspool",
    "12345678-1234-abcd-ef00-01234567cffb": "netlogon",
    "e3514235-4b06-11d1-ab04-00c04fc2dcd2": "drsuapi",
    "5261574a-4572-206e-b268-6b199213b4e4": "AsyncEMSMDB",
    "4d9f4ab8-7d1c-11cf-861e-0020af6e7c57": "IActivation",
    "99fcfec4-5260-101b-bbcb-00aa0021347a": "IObjectExporter",
    "e1af8308-5d1f-11c9-91a4-08002b14a0fa": "epmapper",
    "12345778-1234-abcd-ef00-0123456789ac": "samr",
    "4b324fc8-1670-01d3-1278-5a47bf6ee188": "srvsvc",
    "45f52c28-7f9f-101a-b52b-08002b2efabe": "winspipe",
    "6bffd098-a112-3610-9833-46c3f87e345a": "wkssvc",
    "3919286a-b10c-11d0-9ba8-00c04fd92ef5": "dssetup",
    "12345678-1234-abcd-ef00-0123456789ab": "spoolss",
    "1544f5e0-613c-11d1-93df-00c04fd7bd09": "exchange_rfr",
    "f5cc5a18-4264-101a-8c59-08002b2f8426": "nspi",
    "a4f1db00-ca47-1067-b31f-00dd010662da": "exchange_mapi",
    "9556dc99-828c-11cf-a37e-00aa003240c7": "IWbemServices",
    "f309ad18-d86a-11d0-a075-00c04fb68820": "IWbemLevel1Login",
    "d4781cd6-e5d3-44df-ad94-930efe48a887": "IWbemLoginClientID",
    "44aca674-e8fc-11d0-a07c-00c04fb68820": "IWbemContext interface",
    "674b6698-ee92-11d0-ad71-00c04fd8fdff": "IWbemContext unmarshaler",
    "dc12a681-737f-11cf-884d-00aa004b2e24": "IWbemClassObject interface",
    "4590f812-1d3a-11d0-891f-00aa004b2e24": "IWbemClassObject unmarshaler",
    "9a653086-174f-11d2-b5f9-00104b703efd": "IWbemClassObject interface",
    "c49e32c6-bc8b-11d2-85d4-00105a1f8304": "IWbemBackupRestoreEx interface",
    "7c857801-7381-11cf-884d-00aa004b2e24": "IWbemObjectSink interface",
    "027947e1-d731-11ce-a357-000000000001": "IEnumWbemClassObject interface",
    "44aca675-e8fc-11d0-a07c-00c04fb68820": "IWbemCallResult interface",
    "c49e32c7-bc8b-11d2-85d4-00105a1f8304": "IWbemBackupRestore interface",
    "a359dec5-e813-4834-8a2a-ba7f1d777d76": "IWbemBackupRestoreEx interface",
    "f1e9c5b2-f59b-11d2-b362-00105a1f8177": "IWbemRemoteRefresher interface",
    "2c9273e0-1dc3-11d3-b364-00105a1f8177": "IWbemRefreshingServices interface",
    "423ec01e-2e35-11d2-b604-00104b703efd": "IWbemWCOSmartEnum interface",
    "1c1c45ee-4395-11d2-b60b-00104b703efd": "IWbemFetchSmartEnum interface",
    # Zeek's table spells this key in upper case, so a lower-case UUID never matches it.
    "541679AB-2E5F-11d3-B34E-00104BCC4B4A": "IWbemLoginHelper interface",
    "51c82175-844e-4750-b0d8-ec255555bc06": "KMS",
    "50abc2a4-574d-40b3-9d66-ee4fd5fba076": "dnsserver",
    "3faf4738-3a21-4307-b46c-fdda9bb8c0d5": "AudioSrv",
    "c386ca3e-9061-4a72-821e-498d83be188f": "AudioRpc",
    "6bffd098-a112-3610-9833-012892020162": "browser",
    "91ae6020-9e3c-11cf-8d7c-00aa00c091be": "ICertPassage",
    "c8cb7687-e6d3-11d2-a958-00c04f682e16": "DAV RPC SERVICE",
    "82273fdc-e32a-18c3-3f78-827929dc23ea": "eventlog",
    "3d267954-eeb7-11d1-b94e-00c04fa3080d": "HydraLsPipe",
    "894de0c0-0d55-11d3-a322-00c04fa321a1": "InitShutdown",
    "d95afe70-a6d5-4259-822e-2c84da1ddb0d": "WindowsShutdown",
    "8d0ffe72-d252-11d0-bf8f-00c04fd9126b": "IKeySvc",
    "68b58241-c259-4f03-a2e5-a2651dcbc930": "IKeySvc2",
    "0d72a7d4-6148-11d1-b4aa-00c04fb66ea0": "ICertProtect",
    "f50aac00-c7f3-428e-a022-a6b71bfb9d43": "ICatDBSvc",
    "338cd001-2244-31f1-aaaa-900038001003": "winreg",
    "3dde7c30-165d-11d1-ab8f-00805f14db40": "BackupKey",
    "3c4728c5-f0ab-448b-bda1-6ce01eb0a6d5": "RpcSrvDHCPC",
    "3c4728c5-f0ab-448b-bda1-6ce01eb0a6d6": "dhcpcsvc6",
    "2f59a331-bf7d-48cb-9ec5-7c090d76e8b8": "lcrpc",
    "5ca4a760-ebb1-11cf-8611-00a0245420ed": "winstation_rpc",
    "12b81e99-f207-4a4c-85d3-77b42f76fd14": "ISeclogon",
    "d6d70ef0-0e3b-11cb-acc3-08002b1d29c3": "NsiS",
    "d3fbb514-0e3b-11cb-8fad-08002b1d29c3": "NsiC",
    "d6d70ef0-0e3b-11cb-acc3-08002b1d29c4": "NsiM",
    "17fdd703-1827-4e34-79d4-24a55c53bb37": "msgsvc",
    "5a7b91f8-ff00-11d0-a9b2-00c04fb6e6fc": "msgsvcsend",
    "8d9f4e40-a03d-11ce-8f69-08003e30051b": "pnp",
    "57674cd0-5200-11ce-a897-08002b2e9c6d": "lls_license",
    "342cfd40-3c6c-11ce-a893-08002b2e9c6d": "llsrpc",
    "4fc742e0-4a10-11cf-8273-00aa004ae673": "netdfs",
    "83da7c00-e84f-11d2-9807-00c04f8ec850": "sfcapi",
    "2f5f3220-c126-1076-b549-074d078619da": "nddeapi",
}

#: pipe name -> the interface most often behind it, for calls whose bind was not seen
PIPE_COMMON_UUID: dict[str, str] = {
    "winreg": "338cd001-2244-31f1-aaaa-900038001003",
    "spoolss": "12345678-1234-abcd-ef00-0123456789ab",
    "srvsvc": "4b324fc8-1670-01d3-1278-5a47bf6ee188",
}


def _ops(names: str, first: int = 0) -> dict[int, str]:
    """Opnum -> name for space-separated names numbered from ``first`` (``-`` = no entry)."""
    return {first + i: n for i, n in enumerate(names.split()) if n != "-"}


OPERATIONS: dict[str, dict[int, str]] = {
    # atsvc
    "1ff70682-0a51-30e8-076d-740be8cee98b": _ops("NetrJobAdd NetrJobDel NetrJobEnum NetrJobGetInfo"),
    # sasec
    "378e52b0-c0a9-11cf-822d-00aa0051e40f": _ops(
        "SASetAccountInformation SASetNSAccountInformation SAGetNSAccountInformation "
        "SAGetAccountInformation"),
    # idletask
    "0a74ef1c-41a4-4e06-83ae-dc74fb1cdd53": _ops(
        "ItSrvRegisterIdleTask ItSrvUnregisterIdleTask ItSrvProcessIdleTasks "
        "ItSrvSetDetectionParameters"),
    # ITaskSchedulerService
    "86d35949-83c9-4044-b424-db363231fd0c": _ops(
        "SchRpcHighestVersion SchRpcRegisterTask SchRpcRetrieveTask SchRpcCreateFolder "
        "SchRpcSetSecurity SchRpcGetSecurity SchRpcEnumFolder SchRpcEnumTasks "
        "SchRpcEnumInstances SchRpcGetInstanceInfo SchRpcStopInstance SchRpcStop SchRpcRun "
        "SchRpcDelete SchRpcRename SchRpcScheduledRuntimes SchRpcGetLastRunInfo "
        "SchRpcGetTaskInfo"),
    # IObjectExporter
    "99fcfec4-5260-101b-bbcb-00aa0021347a": _ops(
        "ResolveOxid SimplePing ComplexPing ServerAlive ResolveOxid2 ServerAlive2"),
    # IActivation
    "4d9f4ab8-7d1c-11cf-861e-0020af6e7c57": _ops("RemoteActivation"),
    # nspi
    "f5cc5a18-4264-101a-8c59-08002b2f8426": _ops(
        "NspiBind NspiUnbind NspiUpdateStat NspiQueryRows NspiSeekEntries NspiGetMatches "
        "NspiResortRestriction NspiDNToEph NspiGetPropList NspiGetProps"),
    # IWbemServices (opnums from 3)
    "9556dc99-828c-11cf-a37e-00aa003240c7": _ops(
        "OpenNamespace CancelAsyncCall QueryObjectSink GetObject GetObjectAsync PutClass "
        "PutClassAsync DeleteClass DeleteClassAsync CreateClassEnum CreateClassEnumAsync "
        "PutInstance PutInstanceAsync DeleteClass DeleteClassAsync CreateInstanceEnum "
        "CreateInstanceEnumAsync ExecQuery ExecQueryAsync ExecNotificationQuery "
        "ExecNotificationQueryAsync ExecMethod ExecMethodAsync", first=3),
    # IWbemLevel1Login (opnums from 3)
    "f309ad18-d86a-11d0-a075-00c04fb68820": _ops(
        "EstablishPosition RequestChallenge WBEMLogin NTLMLogin", first=3),
    # FrsRpc
    "f5cc59b4-4264-101a-8c59-08002b2f8426": _ops(
        "FrsRpcSendCommPkt FrsRpcVerifyPromotionParent FrsRpcStartPromotionParent FrsNOP "
        "FrsBackupComplete FrsBackupComplete FrsBackupComplete FrsBackupComplete "
        "FrsBackupComplete FrsBackupComplete FrsRpcVerifyPromotionParentEx"),
    # IRemUnknown2
    "00000143-0000-0000-c000-000000000046": _ops(
        "QueryInterface AddRef Release RemQueryInterface RemAddRef RemRelease "
        "RemQueryInterface2"),
    # IRemoteSCMActivator
    "000001a0-0000-0000-c000-000000000046": _ops(
        "QueryInterfaceIRemoteSCMActivator AddRefIRemoteISCMActivator "
        "ReleaseIRemoteISCMActivator RemoteGetClassObject RemoteCreateInstance"),
    # netlogon
    "12345678-1234-abcd-ef00-01234567cffb": _ops(
        "NetrLogonUasLogon NetrLogonUasLogoff NetrLogonSamLogon NetrLogonSamLogoff "
        "NetrServerReqChallenge NetrServerAuthenticate NetrServerPasswordSet "
        "NetrDatabaseDeltas NetrDatabaseSync NetrAccountDeltas NetrAccountSync NetrGetDCName "
        "NetrLogonControl NetrGetAnyDCName NetrLogonControl2 NetrServerAuthenticate2 "
        "NetrDatabaseSync2 NetrDatabaseRedo NetrLogonControl2Ex NetrEnumerateTrustedDomains "
        "DsrGetDcName NetrLogonGetCapabilities NetrLogonSetServiceBits NetrLogonGetTrustRid "
        "NetrLogonComputeServerDigest NetrLogonComputeClientDigest NetrServerAuthenticate3 "
        "DsrGetDcNameEx DsrGetSiteName NetrLogonGetDomainInfo NetrServerPasswordSet2 "
        "NetrServerPasswordGet NetrLogonSendToSam DsrAddressToSiteNamesW DsrGetDcNameEx2 "
        "NetrLogonGetTimeServiceParentDomain NetrEnumerateTrustedDomainsEx "
        "DsrAddressToSiteNamesExW DsrGetDcSiteCoverageW NetrLogonSamLogonEx "
        "DsrEnumerateDomainTrusts DsrDeregisterDnsHostRecords NetrServerTrustPasswordsGet "
        "DsrGetForestTrustInformation NetrGetForestTrustInformation "
        "NetrLogonSamLogonWithFlags NetrServerGetTrustInfo unused "
        "DsrUpdateReadOnlyServerDnsRecords NetrChainSetClientAttributes"),
    # IRemoteWinspool
    "76f03f96-cdfd-44fc-a22c-64950a001209": _ops(
        "RpcAsyncOpenPrinter RpcAsyncAddPrinter RpcAsyncSetJob RpcAsyncGetJob RpcAsyncEnumJobs "
        "RpcAsyncAddJob RpcAsyncScheduleJob RpcAsyncDeletePrinter RpcAsyncSetPrinter "
        "RpcAsyncGetPrinter RpcAsyncStartDocPrinter RpcAsyncStartPagePrinter "
        "RpcAsyncWritePrinter RpcAsyncEndPagePrinter RpcAsyncEndDocPrinter "
        "RpcAsyncAbortPrinter RpcAsyncGetPrinterData RpcAsyncGetPrinterDataEx "
        "RpcAsyncSetPrinterData RpcAsyncSetPrinterDataEx RpcAsyncClosePrinter RpcAsyncAddForm "
        "RpcAsyncDeleteForm RpcAsyncGetForm RpcAsyncSetForm RpcAsyncEnumForms "
        "RpcAsyncGetPrinterDriver RpcAsyncEnumPrinterData RpcAsyncEnumPrinterDataEx "
        "RpcAsyncEnumPrinterKey RpcAsyncDeletePrinterData RpcAsyncDeletePrinterDataEx "
        "RpcAsyncDeletePrinterKey RpcAsyncXcvData RpcAsyncSendRecvBidiData "
        "RpcAsyncCreatePrinterIC RpcAsyncPlayGdiScriptOnPrinterIC RpcAsyncDeletePrinterIC "
        "RpcAsyncEnumPrinters RpcAsyncAddPrinterDriver RpcAsyncEnumPrinterDrivers "
        "RpcAsyncGetPrinterDriverDirectory RpcAsyncDeletePrinterDriver "
        "RpcAsyncDeletePrinterDriverEx RpcAsyncAddPrintProcessor RpcAsyncEnumPrintProcessors "
        "RpcAsyncGetPrintProcessorDirectory RpcAsyncEnumPorts RpcAsyncEnumMonitors "
        "RpcAsyncAddPort RpcAsyncSetPort RpcAsyncAddMonitor RpcAsyncDeleteMonitor "
        "RpcAsyncDeletePrintProcessor RpcAsyncEnumPrintProcessorDatatypes "
        "RpcAsyncAddPerMachineConnection RpcAsyncDeletePerMachineConnection "
        "RpcAsyncEnumPerMachineConnections RpcSyncRegisterForRemoteNotifications "
        "RpcSyncUnRegisterForRemoteNotifications RpcSyncRefreshRemoteNotifications "
        "RpcAsyncGetRemoteNotifications RpcAsyncInstallPrinterDriverFromPackage "
        "RpcAsyncUploadPrinterDriverPackage RpcAsyncGetCorePrinterDrivers "
        "RpcAsyncCorePrinterDriverInstalled RpcAsyncGetPrinterDriverPackagePath "
        "RpcAsyncDeletePrinterDriverPackage RpcAsyncReadPrinter RpcAsyncResetPrinter "
        "RpcAsyncGetJobNamedPropertyValue RpcAsyncSetJobNamedProperty "
        "RpcAsyncDeleteJobNamedProperty RpcAsyncEnumJobNamedProperties "
        "RpcAsyncLogJobInfoForBranchOffice"),
    # InitShutdown
    "894de0c0-0d55-11d3-a322-00c04fa321a1": _ops(
        "BaseInitiateShutdown BaseAbortShutdown BaseInitiateShutdownEx"),
    # WindowsShutdown
    "d95afe70-a6d5-4259-822e-2c84da1ddb0d": _ops("WsdrInitiateShutdown WsdrAbortShutdown"),
    # spoolss
    "12345678-1234-abcd-ef00-0123456789ab": _ops(
        "RpcEnumPrinters RpcOpenPrinter RpcSetJob RpcGetJob RpcEnumJobs RpcAddPrinter "
        "RpcDeletePrinter RpcSetPrinter RpcGetPrinter RpcAddPrinterDriver "
        "RpcEnumPrinterDrivers RpcGetPrinterDriver RpcGetPrinterDriverDirectory "
        "RpcDeletePrinterDriver RpcAddPrintProcessor RpcEnumPrintProcessors "
        "RpcGetPrintProcessorDirectory RpcStartDocPrinter RpcStartPagePrinter "
        "RpcWritePrinter RpcEndPagePrinter RpcAbortPrinter RpcReadPrinter RpcEndDocPrinter "
        "RpcAddJob RpcScheduleJob RpcGetPrinterData RpcSetPrinterData "
        "RpcWaitForPrinterChange RpcClosePrinter RpcAddForm RpcDeleteForm RpcGetForm "
        "RpcSetForm RpcEnumForms RpcEnumPorts RpcEnumMonitors RpcAddPort RpcConfigurePort "
        "RpcDeletePort RpcCreatePrinterIC RpcPlayGdiScriptOnPrinterIC RpcDeletePrinterIC "
        "RpcAddPrinterConnection RpcDeletePrinterConnection RpcPrinterMessageBox "
        "RpcAddMonitor RpcDeleteMonitor RpcDeletePrintProcessor RpcAddPrintProvidor "
        "RpcDeletePrintProvidor RpcEnumPrintProcessorDatatypes RpcResetPrinter "
        "RpcGetPrinterDriver2 RpcClientFindFirstPrinterChangeNotification "
        "RpcFindNextPrinterChangeNotification RpcFindClosePrinterChangeNotification "
        "RpcRouterFindFirstPrinterChangeNotificationOld RpcReplyOpenPrinter "
        "RpcRouterReplyPrinter RpcReplyClosePrinter RpcAddPortEx "
        "RpcRemoteFindFirstPrinterChangeNotification RpcSpoolerInit RpcResetPrinterEx "
        "RpcRemoteFindFirstPrinterChangeNotificationEx RpcRouterReplyPrinterEx "
        "RpcRouterRefreshPrinterChangeNotification RpcSetAllocFailCount RpcSplOpenPrinter "
        "RpcAddPrinterEx RpcSetPort RpcEnumPrinterData RpcDeletePrinterData "
        "RpcClusterSplOpen RpcClusterSplClose RpcClusterSplIsAlive RpcSetPrinterDataEx "
        "RpcGetPrinterDataEx RpcEnumPrinterDataEx RpcEnumPrinterKey RpcDeletePrinterDataEx "
        "RpcDeletePrinterKey RpcSeekPrinter RpcDeletePrinterDriverEx "
        "RpcAddPerMachineConnection RpcDeletePerMachineConnection "
        "RpcEnumPerMachineConnections RpcXcvData RpcAddPrinterDriverEx RpcSplOpenPrinter "
        "RpcGetSpoolFileInfo RpcCommitSpoolData RpcCloseSpoolFileHandle RpcFlushPrinter "
        "RpcSendRecvBidiData RpcAddDriverCatalog RpcAddPrinterConnection2 "
        "RpcDeletePrinterConnection2 RpcInstallPrinterDriverFromPackage "
        "RpcUploadPrinterDriverPackage RpcGetCorePrinterDrivers "
        "RpcCorePrinterDriverInstalled RpcGetPrinterDriverPackagePath "
        "RpcReportJobProcessingProgress"),
    # srvsvc (Zeek has no name for opnum 0x36)
    "4b324fc8-1670-01d3-1278-5a47bf6ee188": _ops(
        "NetrCharDevEnum NetrCharDevGetInfo NetrCharDevControl NetrCharDevQEnum "
        "NetrCharDevQGetInfo NetrCharDevQSetInfo NetrCharDevQPurge NetrCharDevQPurgeSelf "
        "NetrConnectionEnum NetrFileEnum NetrFileGetInfo NetrFileClose NetrSessionEnum "
        "NetrSessionDel NetrShareAdd NetrShareEnum NetrShareGetInfo NetrShareSetInfo "
        "NetrShareDel NetrShareDelSticky NetrShareCheck NetrServerGetInfo NetrServerSetInfo "
        "NetrServerDiskEnum NetrServerStatisticsGet NetrServerTransportAdd "
        "NetrServerTransportEnum NetrServerTransportDel NetrRemoteTOD "
        "NetrServerSetServiceBits NetprPathType NetprPathCanonicalize NetprPathCompare "
        "NetprNameValidate NetprNameCanonicalize NetprNameCompare NetrShareEnumSticky "
        "NetrShareDelStart NetrShareDelCommit NetrpGetFileSecurity NetrpSetFileSecurity "
        "NetrServerTransportAddEx NetrServerSetServiceBitsEx NetrDfsGetVersion "
        "NetrDfsCreateLocalPartition NetrDfsDeleteLocalPartition NetrDfsSetLocalVolumeState "
        "NetrDfsSetServerInfo NetrDfsCreateExitPoint NetrDfsDeleteExitPoint "
        "NetrDfsModifyPrefix NetrDfsFixLocalVolume NetrDfsManagerReportSiteInfo "
        "NetrServerTransportDelEx - NetrServerAliasEnum NetrServerAliasDel NetrShareDelEx"),
    # samr
    "12345778-1234-abcd-ef00-0123456789ac": _ops(
        "SamrConnect SamrCloseHandle SamrSetSecurityObject SamrQuerySecurityObject "
        "SamrShutdownSamServer SamrLookupDomainInSamServer SamrEnumerateDomainsInSamServer "
        "SamrOpenDomain SamrQueryInformationDomain SamrSetInformationDomain "
        "SamrCreateGroupInDomain SamrEnumerateGroupsInDomain SamrCreateUserInDomain "
        "SamrEnumerateUsersInDomain SamrCreateAliasInDomain SamrEnumerateAliasesInDomain "
        "SamrGetAliasMembership SamrLookupNamesInDomain SamrLookupIdsInDomain SamrOpenGroup "
        "SamrQueryInformationGroup SamrSetInformationGroup SamrAddMemberToGroup "
        "SamrDeleteGroup SamrRemoveMemberFromGroup SamrGetMembersInGroup "
        "SamrSetMemberAttributesOfGroup SamrOpenAlias SamrQueryInformationAlias "
        "SamrSetInformationAlias SamrDeleteAlias SamrAddMemberToAlias "
        "SamrRemoveMemberFromAlias SamrGetMembersInAlias SamrOpenUser SamrDeleteUser "
        "SamrQueryInformationUser SamrSetInformationUser SamrChangePasswordUser "
        "SamrGetGroupsForUser SamrQueryDisplayInformation SamrGetDisplayEnumerationIndex "
        "SamrTestPrivateFunctionsDomain SamrTestPrivateFunctionsUser "
        "SamrGetUserDomainPasswordInformation SamrRemoveMemberFromForeignDomain "
        "SamrQueryInformationDomain2 SamrQueryInformationUser2 SamrQueryDisplayInformation2 "
        "SamrGetDisplayEnumerationIndex2 SamrCreateUser2InDomain SamrQueryDisplayInformation3 "
        "SamrAddMultipleMembersToAlias SamrRemoveMultipleMembersFromAlias "
        "SamrOemChangePasswordUser2 SamrUnicodeChangePasswordUser2 "
        "SamrGetDomainPasswordInformation SamrConnect2 SamrSetInformationUser2 "
        "SamrSetBootKeyInformation SamrGetBootKeyInformation SamrConnect3 SamrConnect4 "
        "SamrUnicodeChangePasswordUser3 SamrConnect5 SamrRidToSid SamrSetDSRMPassword "
        "SamrValidatePassword SamrQueryLocalizableAccountsInDomain "
        "SamrPerformGenericOperation"),
    # winreg
    "338cd001-2244-31f1-aaaa-900038001003": _ops(
        "OpenClassesRoot OpenCurrentUser OpenLocalMachine OpenPerformanceData OpenUsers "
        "BaseRegCloseKey BaseRegCreateKey BaseRegDeleteKey BaseRegDeleteValue BaseRegEnumKey "
        "BaseRegEnumValue BaseRegFlushKey BaseRegGetKeySecurity BaseRegLoadKey "
        "BaseRegNotifyChangeKeyValue BaseRegOpenKey BaseRegQueryInfoKey BaseRegQueryValue "
        "BaseRegReplaceKey BaseRegRestoreKey BaseRegSaveKey BaseRegSetKeySecurity "
        "BaseRegSetValue BaseRegUnLoadKey BaseInitiateSystemShutdown BaseAbortSystemShutdown "
        "BaseRegGetVersion OpenCurrentConfig OpenDynData BaseRegQueryMultipleValues "
        "BaseInitiateSystemShutdownEx BaseRegSaveKeyEx OpenPerformanceText "
        "OpenPerformanceNlsText BaseRegQueryMultipleValues2 BaseRegDeleteKeyEx"),
    # dssetup
    "3919286a-b10c-11d0-9ba8-00c04fd92ef5": _ops(
        "DsRolerGetPrimaryDomainInformation DsRolerDnsNameToFlatName DsRolerDcAsDc "
        "DsRolerDcAsReplica DsRolerDemoteDc DsRolerGetDcOperationProgress "
        "DsRolerGetDcOperationResults DsRolerCancel DsRolerServerSaveStateForUpgrade "
        "DsRolerUpgradeDownlevelServer DsRolerAbortDownlevelServerUpgrade"),
    # svcctl
    "367abb81-9844-35f1-ad32-98f038001003": _ops(
        "CloseServiceHandle ControlService DeleteService LockServiceDatabase "
        "QueryServiceObjectSecurity SetServiceObjectSecurity QueryServiceStatus "
        "SetServiceStatus UnlockServiceDatabase NotifyBootConfigStatus ScSetServiceBitsW "
        "ChangeServiceConfigW CreateServiceW EnumDependentServicesW EnumServicesStatusW "
        "OpenSCManagerW OpenServiceW QueryServiceConfigW QueryServiceLockStatusW "
        "StartServiceW GetServiceDisplayNameW GetServiceKeyNameW ScSetServiceBitsA "
        "ChangeServiceConfigA CreateServiceA EnumDependentServicesA EnumServicesStatusA "
        "OpenSCManagerA OpenServiceA QueryServiceConfigA QueryServiceLockStatusA "
        "StartServiceA GetServiceDisplayNameA GetServiceKeyNameA ScGetCurrentGroupStateW "
        "EnumServiceGroupW ChangeServiceConfig2A ChangeServiceConfig2W QueryServiceConfig2A "
        "QueryServiceConfig2W QueryServiceStatusEx EnumServicesStatusExA "
        "EnumServicesStatusExW ScSendTSMessage CreateServiceWOW64A CreateServiceWOW64W "
        "ScQueryServiceTagInfo NotifyServiceStatusChange GetNotifyResult CloseNotifyHandle "
        "ControlServiceExA ControlServiceExW ScSendPnPMessage ScValidatePnPService "
        "ScOpenServiceStatusHandle"),
    # eventlog
    "82273fdc-e32a-18c3-3f78-827929dc23ea": _ops(
        "ElfrClearELFW ElfrBackupELFW ElfrCloseEL ElfrDeregisterEventSource "
        "ElfrNumberOfRecords ElfrOldestRecord ElfrChangeNotify ElfrOpenELW "
        "ElfrRegisterEventSourceW ElfrOpenBELW ElfrReadELW ElfrReportEventW ElfrClearELFA "
        "ElfrBackupELFA ElfrOpenELA ElfrRegisterEventSourceA ElfrOpenBELA ElfrReadELA "
        "ElfrReportEventA ElfrRegisterClusterSvc ElfrDeregisterClusterSvc "
        "ElfrWriteClusterEvents ElfrGetLogInformation ElfrFlushEL ElfrReportEventAndSourceW"),
    # ISeclogon
    "12b81e99-f207-4a4c-85d3-77b42f76fd14": _ops(
        "SeclCreateProcessWithLogonW SeclCreateProcessWithLogonExW"),
    # lsarpc
    "12345778-1234-abcd-ef00-0123456789ab": _ops(
        "LsarClose LsarDelete LsarEnumeratePrivileges LsarQuerySecurityObject "
        "LsarSetSecurityObject LsarChangePassword LsarOpenPolicy LsarQueryInformationPolicy "
        "LsarSetInformationPolicy LsarClearAuditLog LsarCreateAccount LsarEnumerateAccounts "
        "LsarCreateTrustedDomain LsarEnumerateTrustedDomains LsarLookupNames LsarLookupSids "
        "LsarCreateSecret LsarOpenAccount LsarEnumeratePrivilegesAccount "
        "LsarAddPrivilegesToAccount LsarRemovePrivilegesFromAccount LsarGetQuotasForAccount "
        "LsarSetQuotasForAccount LsarGetSystemAccessAccount LsarSetSystemAccessAccount "
        "LsarOpenTrustedDomain LsarQueryInfoTrustedDomain LsarSetInformationTrustedDomain "
        "LsarOpenSecret LsarSetSecret LsarQuerySecret LsarLookupPrivilegeValue "
        "LsarLookupPrivilegeName LsarLookupPrivilegeDisplayName LsarDeleteObject "
        "LsarEnumerateAccountsWithUserRight LsarEnumerateAccountRights LsarAddAccountRights "
        "LsarRemoveAccountRights LsarQueryTrustedDomainInfo LsarSetTrustedDomainInfo "
        "LsarDeleteTrustedDomain LsarStorePrivateData LsarRetrievePrivateData LsarOpenPolicy2 "
        "LsarGetUserName LsarQueryInformationPolicy2 LsarSetInformationPolicy2 "
        "LsarQueryTrustedDomainInfoByName LsarSetTrustedDomainInfoByName "
        "LsarEnumerateTrustedDomainsEx LsarCreateTrustedDomainEx LsarCloseTrustedDomainEx "
        "LsarQueryDomainInformationPolicy LsarSetDomainInformationPolicy "
        "LsarOpenTrustedDomainByName LsarTestCall LsarLookupSids2 LsarLookupNames2 "
        "LsarCreateTrustedDomainEx2 CredrWrite CredrRead CredrEnumerate "
        "CredrWriteDomainCredentials CredrReadDomainCredentials CredrDelete "
        "CredrGetTargetInfo CredrProfileLoaded LsarLookupNames3 CredrGetSessionTypes "
        "LsarRegisterAuditEvent LsarGenAuditEvent LsarUnregisterAuditEvent "
        "LsarQueryForestTrustInformation LsarSetForestTrustInformation CredrRename "
        "LsarLookupSids3 LsarLookupNames4 LsarOpenPolicySce "
        "LsarAdtRegisterSecurityEventSource LsarAdtUnregisterSecurityEventSource "
        "LsarAdtReportSecurityEvent CredrFindBestCredential LsarSetAuditPolicy "
        "LsarQueryAuditPolicy LsarEnumerateAuditPolicy LsarEnumerateAuditCategories "
        "LsarEnumerateAuditSubCategories LsarLookupAuditCategoryName "
        "LsarLookupAuditSubCategoryName LsarSetAuditSecurity LsarQueryAuditSecurity "
        "CredReadByTokenHandle CredrRestoreCredentials CredrBackupCredentials"),
    # DnsServer
    "50abc2a4-574d-40b3-9d66-ee4fd5fba076": _ops(
        "DnssrvOperation DnssrvQuery DnssrvComplexOperation DnssrvEnumRecords "
        "DnssrvUpdateRecord DnssrvOperation2 DnssrvQuery2 DnssrvComplexOperation2 "
        "DnssrvEnumRecords2 DnssrvUpdateRecord2"),
    # ICertPassage
    "91ae6020-9e3c-11cf-8d7c-00aa00c091be": _ops("CertServerRequest"),
    # BackupKey
    "3dde7c30-165d-11d1-ab8f-00805f14db40": _ops("bkrp_BackupKey"),
    # wkssvc
    "6bffd098-a112-3610-9833-46c3f87e345a": _ops(
        "NetrWkstaGetInfo NetrWkstaSetInfo NetrWkstaUserEnum NetrWkstaUserGetInfo "
        "NetrWkstaUserSetInfo NetrWkstaTransportEnum NetrWkstaTransportAdd "
        "NetrWkstaTransportDel NetrUseAdd NetrUseGetInfo NetrUseDel NetrUseEnum "
        "NetrMessageBufferSend NetrWorkstationStatisticsGet NetrLogonDomainNameAdd "
        "NetrLogonDomainNameDel NetrJoinDomain NetrUnjoinDomain NetrValidateName "
        "NetrRenameMachineInDomain NetrGetJoinInformation NetrGetJoinableOUs NetrJoinDomain2 "
        "NetrUnjoinDomain2 NetrRenameMachineInDomain2 NetrValidateName2 NetrGetJoinableOUs2 "
        "NetrAddAlternateComputerName NetrRemoveAlternateComputerName "
        "NetrSetPrimaryComputerName NetrEnumerateComputerNames NetrWorkstationResetDfsCache"),
    # epmapper
    "e1af8308-5d1f-11c9-91a4-08002b14a0fa": _ops(
        "ept_insert ept_delete ept_lookup ept_map ept_lookup_handle_free ept_inq_object "
        "ept_mgmt_delete ept_map_auth ept_map_auth_async"),
    # exchange_mapi
    "a4f1db00-ca47-1067-b31f-00dd010662da": _ops(
        "EcDoConnect EcDoDisconnect EcDoRpc EcGetMoreRpc EcRRegisterPushNotification "
        "EcRUnregisterPushNotification EcDummyRpc EcRGetDCName EcRNetGetDCName EcDoRpcExt "
        "EcDoConnectEx EcDoRpcExt2 EcUnknown0xC EcUnknown0xD EcDoAsyncConnectEx"),
    # drsuapi
    "e3514235-4b06-11d1-ab04-00c04fc2dcd2": _ops(
        "DRSBind DRSUnbind DRSReplicaSync DRSGetNCChanges DRSUpdateRefs DRSReplicaAdd "
        "DRSReplicaDel DRSReplicaModify DRSVerifyNames DRSGetMemberships DRSInterDomainMove "
        "DRSGetNT4ChangeLog DRSCrackNames DRSWriteSPN DRSRemoveDsServer DRSRemoveDsDomain "
        "DRSDomainControllerInfo DRSAddEntry DRSExecuteKCC DRSGetReplInfo DRSAddSidHistory "
        "DRSGetMemberships2 DRSReplicaVerifyObjects DRSGetObjectExistence "
        "DRSQuerySitesByCost"),
    # mgmt
    "afa8bd80-7d8a-11c9-bef4-08002b102989": _ops(
        "inq_if_ids inq_stats is_server_listening stop_server_listening inq_princ_name"),
}


def endpoint_name(uuid: str) -> str:
    """Zeek's endpoint name for an interface UUID (lower-case text form); else impacket's."""
    name = UUID_ENDPOINTS.get(uuid)
    if name is None:
        name = dcerpc_impacket.interface_name(uuid)
    return name if name is not None else f"unknown-{uuid}"


def operation_name(uuid: str, opnum: int) -> str:
    """Zeek's operation name for ``opnum`` on interface ``uuid``; impacket's for interfaces Zeek lacks."""
    ops = OPERATIONS.get(uuid)
    if ops is not None:
        name = ops.get(opnum)
        if name is not None:
            return name
    elif uuid not in UUID_ENDPOINTS:
        name = dcerpc_impacket.operation_name(uuid, opnum)
        if name is not None:
            return name
    return f"unknown-{opnum}"
